//! `alsoborrowed package-assets <dir>` (hidden: not a clap command, so
//! neither help nor the completions offer it): the man pages and shell
//! completions of the Debian package, generated from the clap definition
//! itself so they cannot drift from the binary. Deterministic (no date, no
//! path of the build machine); `deploy/deb.sh` runs it at package-build time
//! into `target/`, nothing generated is committed.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;

/// The first argument that asks for the assets.
const COMMAND: &str = "package-assets";

/// Runs `alsoborrowed package-assets <dir>` if that is what was asked.
pub(crate) fn main_if_asked() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != COMMAND {
        return None;
    }
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: alsoborrowed {COMMAND} <dir>");
        return Some(ExitCode::from(2));
    };
    Some(match write(Path::new(&dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    })
}

/// Writes `<dir>/man/*.1` (one page for the command and one per
/// subcommand, `alsoborrowed-key-new.1` for nested ones) and
/// `<dir>/completions/{alsoborrowed.bash,_alsoborrowed,alsoborrowed.fish}`.
pub(crate) fn write(dir: &Path) -> Result<()> {
    let mut cmd = crate::Cli::command();
    cmd.build();
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    man_pages(&cmd, "alsoborrowed", &man)?;
    use clap_complete::Shell;
    for (shell, name) in [
        (Shell::Bash, "alsoborrowed.bash"),
        (Shell::Zsh, "_alsoborrowed"),
        (Shell::Fish, "alsoborrowed.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "alsoborrowed", &mut out);
        let path = completions.join(name);
        std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// One page for `cmd` named `name`, then one per visible subcommand.
fn man_pages(cmd: &clap::Command, name: &str, dir: &Path) -> Result<()> {
    // A built subcommand's display name is already `alsoborrowed-<sub>`,
    // which is the page's title and NAME.
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .source(format!("alsoborrowed {}", env!("CARGO_PKG_VERSION")))
        .render(&mut out)
        .with_context(|| format!("rendering the man page of {name}"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        man_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    fn generated(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        for sub in ["man", "completions"] {
            for e in std::fs::read_dir(dir.join(sub)).unwrap() {
                let e = e.unwrap();
                out.insert(
                    format!("{sub}/{}", e.file_name().to_string_lossy()),
                    std::fs::read(e.path()).unwrap(),
                );
            }
        }
        out
    }

    #[test]
    fn pages_for_every_command_and_completions_deterministically() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        super::write(a.path()).unwrap();
        super::write(b.path()).unwrap();
        let (ga, gb) = (generated(a.path()), generated(b.path()));
        assert_eq!(ga, gb, "two runs differ");
        for name in [
            "man/alsoborrowed.1",
            "man/alsoborrowed-run.1",
            "man/alsoborrowed-extract.1",
            "man/alsoborrowed-verify.1",
            "man/alsoborrowed-key.1",
            "man/alsoborrowed-key-new.1",
            "man/alsoborrowed-serve.1",
            "completions/alsoborrowed.bash",
            "completions/_alsoborrowed",
            "completions/alsoborrowed.fish",
        ] {
            assert!(ga.contains_key(name), "{name} missing: {:?}", ga.keys());
        }
        assert!(
            !ga.keys()
                .any(|k| k.contains("package-assets") || k.contains("help"))
        );
        let run = String::from_utf8(ga["man/alsoborrowed-run.1"].clone()).unwrap();
        assert!(run.contains("Examples"), "{run}");
        assert!(run.contains("\\-\\-pipeline"), "{run}");
        let bash = String::from_utf8(ga["completions/alsoborrowed.bash"].clone()).unwrap();
        assert!(bash.contains("extract") && bash.contains("--pipeline"));
        assert!(!bash.contains("package-assets"));
    }
}

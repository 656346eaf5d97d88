//! What to change, for the mistakes a first-time operator makes: a missing
//! key file, a store or export directory that cannot be written, a loans file
//! that is not there, a misspelt key or section in the pipeline file. The
//! fix is appended to the one-line error (`error: ...; fix: ...`). It names
//! paths, keys and commands only, never a value of the data.

use std::io::ErrorKind;
use std::path::Path;

/// The fix for the first error in the chain that has one, if any.
pub(crate) fn fix(err: &anyhow::Error) -> Option<String> {
    err.chain().find_map(|cause| {
        if let Some(e) = cause.downcast_ref::<keys::KeyError>() {
            return key_fix(e);
        }
        if let Some(e) = cause.downcast_ref::<pipeline::PipelineError>() {
            return pipeline_fix(e);
        }
        if let Some(e) = cause.downcast_ref::<store::StoreError>() {
            return store_fix(e);
        }
        if let Some(extract::ExtractError::Io { path, source }) =
            cause.downcast_ref::<extract::ExtractError>()
        {
            return io_fix(path, source.kind(), Some(Role::Input));
        }
        if let Some(e) = cause.downcast_ref::<publish::PublishError>() {
            return publish_fix(e);
        }
        None
    })
}

/// What a path is for, to say which pipeline key to change.
#[derive(Clone, Copy)]
enum Role {
    Input,
    Store,
    Export,
}

fn key_fix(e: &keys::KeyError) -> Option<String> {
    match e {
        keys::KeyError::Missing { path } => Some(format!(
            "make it once with `alsoborrowed key new {}` (or point [keys] of the pipeline file at the existing key)",
            path.display()
        )),
        keys::KeyError::Io { path, source, .. } if source.kind() == ErrorKind::PermissionDenied => {
            Some(format!(
                "the key file must belong to the user running alsoborrowed, with mode 0600 (e.g. chown alsoborrowed {} && chmod 600 {0})",
                path.display()
            ))
        }
        _ => None,
    }
}

fn pipeline_fix(e: &pipeline::PipelineError) -> Option<String> {
    match e {
        pipeline::PipelineError::Read { path, source } if source.kind() == ErrorKind::NotFound => {
            Some(format!(
                "check the path given to --pipeline ({}); the examples are in /usr/share/doc/alsoborrowed/examples or pipelines/ of the source",
                path.display()
            ))
        }
        pipeline::PipelineError::Parse { message, .. } => unknown_key_fix(message),
        _ => None,
    }
}

/// "unknown field `windw_months`, expected one of `window_months`, ..."
/// -> "use `window_months` ...". A section is a field of the top level, so a
/// misspelt `[engin]` is found the same way.
fn unknown_key_fix(message: &str) -> Option<String> {
    let rest = message.split("unknown field `").nth(1)?;
    let (field, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest
        .split("expected")
        .nth(1)?
        .split('`')
        .skip(1)
        .step_by(2)
        .collect();
    let best = expected
        .iter()
        .map(|c| (edit_distance(field, c), *c))
        .min()
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .map(|(_, c)| c);
    Some(match best {
        Some(c) => format!(
            "did you mean `{c}`? rename `{field}` to `{c}` (every key is in docs/configuration.md)"
        ),
        None => format!(
            "remove `{field}` or use one of the keys listed (every key is in docs/configuration.md)"
        ),
    })
}

/// Levenshtein distance, for suggesting a key name.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn store_fix(e: &store::StoreError) -> Option<String> {
    match e {
        store::StoreError::Io { path, source } => io_fix(path, source.kind(), Some(Role::Store)),
        store::StoreError::NotADirectory { path } => Some(format!(
            "store.path must name a directory; move {} away or choose another store.path",
            path.display()
        )),
        _ => None,
    }
}

fn publish_fix(e: &publish::PublishError) -> Option<String> {
    match e {
        publish::PublishError::Io { path, source } => {
            io_fix(path, source.kind(), Some(Role::Export))
        }
        _ => None,
    }
}

/// The fix of an I/O error on `path`, by its kind.
fn io_fix(path: &Path, kind: ErrorKind, role: Option<Role>) -> Option<String> {
    let key = match role {
        Some(Role::Input) => "source.path (or --input)",
        Some(Role::Store) => "store.path",
        Some(Role::Export) => "export.path",
        None => "the pipeline file",
    };
    match kind {
        ErrorKind::NotFound => Some(match role {
            Some(Role::Input) => "check source.path in the pipeline file (a relative path is relative to the pipeline file) or pass --input FILE".to_owned(),
            _ => format!("create {} or change {key}", path.display()),
        }),
        ErrorKind::PermissionDenied => Some(format!(
            "let the user running alsoborrowed {} {} (owner and mode), or change {key}",
            if matches!(role, Some(Role::Input)) {
                "read"
            } else {
                "write"
            },
            path.display()
        )),
        ErrorKind::NotADirectory => Some(format!(
            "a parent of {} is not a directory; change {key}",
            path.display()
        )),
        ErrorKind::ReadOnlyFilesystem => Some(format!(
            "{} is on a read-only file system; change {key} to a writable directory (under systemd: ReadWritePaths=)",
            path.display()
        )),
        _ => None,
    }
}

/// The fix of a plain I/O error that an `anyhow` context names (the
/// command's own directories: the outbox, the export directory's lock).
pub(crate) fn plain_io_fix(err: &anyhow::Error) -> Option<String> {
    let io = err
        .chain()
        .find_map(|c| c.downcast_ref::<std::io::Error>())?;
    match io.kind() {
        ErrorKind::PermissionDenied => Some(
            "give the user running alsoborrowed access to the path named above (owner and mode), or change that path in the pipeline file"
                .to_owned(),
        ),
        ErrorKind::NotADirectory => Some(
            "a parent of the path named above is a file, not a directory; change the pipeline file's path"
                .to_owned(),
        ),
        ErrorKind::ReadOnlyFilesystem => Some(
            "the directory named above is on a read-only file system; choose a writable one (under systemd: ReadWritePaths=)"
                .to_owned(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_key_gets_the_closest_name() {
        let m = "line 3, column 1: unknown field `windw_months`, expected one of `window_months`, `window_end`, `measure`";
        let f = unknown_key_fix(m).unwrap();
        assert!(f.starts_with("did you mean `window_months`?"), "{f}");
        let m = "line 1, column 2: unknown field `engin`, expected one of `library`, `keys`, `source`, `engine`, `export`";
        assert!(unknown_key_fix(m).unwrap().contains("`engine`"));
        let m = "unknown field `colour`, expected one of `library`, `keys`";
        assert!(unknown_key_fix(m).unwrap().starts_with("remove `colour`"));
        assert!(unknown_key_fix("line 1: expected `=`").is_none());
    }

    #[test]
    fn io_errors_say_which_key_to_change() {
        let p = Path::new("/srv/store");
        let f = io_fix(p, ErrorKind::PermissionDenied, Some(Role::Store)).unwrap();
        assert_eq!(
            f,
            "let the user running alsoborrowed write /srv/store (owner and mode), or change store.path"
        );
        let f = io_fix(p, ErrorKind::PermissionDenied, Some(Role::Input)).unwrap();
        assert!(
            f.starts_with("let the user running alsoborrowed read /srv/store"),
            "{f}"
        );
        let f = io_fix(p, ErrorKind::ReadOnlyFilesystem, Some(Role::Export)).unwrap();
        assert!(f.contains("change export.path"), "{f}");
        assert!(io_fix(p, ErrorKind::Interrupted, Some(Role::Export)).is_none());
        let e = anyhow::Error::new(std::io::Error::from(ErrorKind::PermissionDenied))
            .context("creating /srv/www/lock");
        assert!(
            plain_io_fix(&e)
                .unwrap()
                .starts_with("give the user running alsoborrowed access")
        );
    }

    #[test]
    fn edit_distance_counts_edits() {
        for (a, b, d) in [
            ("", "", 0),
            ("a", "", 1),
            ("engin", "engine", 1),
            ("kitten", "sitting", 3),
            ("U1", "U1", 0),
        ] {
            assert_eq!(edit_distance(a, b), d, "{a} {b}");
        }
    }

    #[test]
    fn a_missing_key_file_says_how_to_make_it() {
        let e = anyhow::Error::new(keys::KeyError::Missing {
            path: "/etc/alsoborrowed/keys/pseudonym.key".into(),
        })
        .context("loading the pseudonym key");
        assert_eq!(
            fix(&e).unwrap(),
            "make it once with `alsoborrowed key new /etc/alsoborrowed/keys/pseudonym.key` (or point [keys] of the pipeline file at the existing key)"
        );
    }
}

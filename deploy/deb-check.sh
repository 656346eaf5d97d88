#!/usr/bin/env bash
# Builds the Debian package, installs it with dpkg (as root) and checks what
# an operator gets: the binary's version and help, the man pages, the shell
# completions, the example pipelines and `systemd-analyze verify` of the
# units (which needs no running systemd). CI runs this with DEB_PROFILE=dev
# (the debug build its tests made; see deploy/deb.sh); so can a person.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo_deb_version=3.8.0
if [ "$(cargo deb --version 2> /dev/null || true)" != "cargo-deb $cargo_deb_version" ]; then
    cargo install cargo-deb --version "$cargo_deb_version" --locked --quiet
fi
# man-db: `man -w` and the Documentation= check of systemd-analyze; systemd:
# systemd-analyze.
missing=()
command -v man > /dev/null || missing+=(man-db)
command -v systemd-analyze > /dev/null || missing+=(systemd)
# dpkg-dev: dpkg-shlibdeps, for the package's automatic libc dependency.
command -v dpkg-shlibdeps > /dev/null || missing+=(dpkg-dev)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null
fi

if [ "${DEB_PROFILE:-release}" = dev ]; then
    # The debug binary is large: the fastest compression will do for a check.
    bash deploy/deb.sh --fast
else
    bash deploy/deb.sh
fi
deb=$(ls -t target/debian/alsoborrowed_*.deb | head -n 1)
echo "package: $deb ($(du -k "$deb" | cut -f1) KiB)"
dpkg -i "$deb"

version=$(/usr/bin/alsoborrowed --version)
echo "$version"
case "$version" in
    "alsoborrowed 0.0.0" | "") echo "error: the installed binary has no real version" >&2; exit 1 ;;
esac
echo "installed binary: $(du -k /usr/bin/alsoborrowed | cut -f1) KiB"
/usr/bin/alsoborrowed help > /dev/null
/usr/bin/alsoborrowed help run | grep -q '^Examples:'
man -w alsoborrowed
man -w alsoborrowed-run
for f in /usr/share/bash-completion/completions/alsoborrowed \
    /usr/share/zsh/vendor-completions/_alsoborrowed \
    /usr/share/fish/vendor_completions.d/alsoborrowed.fish \
    /usr/share/doc/alsoborrowed/examples/demo.toml \
    /usr/share/doc/alsoborrowed/examples/koha-db.toml; do
    test -s "$f" || { echo "error: $f is missing" >&2; exit 1; }
done
getent passwd alsoborrowed > /dev/null
units=/usr/lib/systemd/system
systemd-analyze verify "$units/alsoborrowed-run@.service" "$units/alsoborrowed-run@.timer" \
    "$units/alsoborrowed-serve.service"
echo "units verified: alsoborrowed-run@.service alsoborrowed-run@.timer alsoborrowed-serve.service"

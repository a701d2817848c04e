#!/bin/sh
# Build the test packages at one version with dpkg-deb and (re)index the two flat apt
# repositories the lab's repo container serves:
#   main/      Origin TechOps-Lab, Suite lab           (regular updates)
#   security/  Origin TechOps-Lab, Suite lab-security  (matches the role's "*-security")
# Usage: build-repo.sh REPO_DIR VERSION. Versions accumulate; apt takes the newest.
set -eu
repo=$1
version=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# package NAME REPO: a package with a control file and a version file; maintainer scripts and
# more files are added by the caller in $work/NAME before build.
start() {
    root=$work/$1
    mkdir -p "$root/DEBIAN" "$root/usr/share/$1"
    printf '%s\n' "$version" >"$root/usr/share/$1/version"
    cat >"$root/DEBIAN/control" <<CONTROL
Package: $1
Version: $version
Architecture: all
Maintainer: TechOps <techops@example.com>
Section: misc
Priority: optional
Description: techops patch scenario test package ($1 $version)
CONTROL
}

finish() {
    mkdir -p "$repo/$2"
    dpkg-deb --root-owner-group -Zgzip -b "$work/$1" "$repo/$2/${1}_${version}_all.deb" >/dev/null
}

# An HTTP service (health probe and unit check), restarted on upgrade.
start techops-lab-app
mkdir -p "$work/techops-lab-app/lib/systemd/system"
cp "$work/techops-lab-app/usr/share/techops-lab-app/version" "$work/techops-lab-app/usr/share/techops-lab-app/index.html"
cat >"$work/techops-lab-app/lib/systemd/system/techops-lab-app.service" <<'UNIT'
[Unit]
Description=techops patch scenario test service
After=network.target

[Service]
ExecStart=/usr/bin/python3 -m http.server 8081 --directory /usr/share/techops-lab-app

[Install]
WantedBy=multi-user.target
UNIT
cat >"$work/techops-lab-app/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    systemctl daemon-reload || true
    systemctl enable techops-lab-app.service || true
    systemctl restart techops-lab-app.service || true
fi
SCRIPT
chmod 0755 "$work/techops-lab-app/DEBIAN/postinst"
finish techops-lab-app main

# Excluded by the scenario: must stay at the version installed in prepare.
start techops-lab-pinned
finish techops-lab-pinned main

# A security update whose upgrade asks for a reboot, as linux-image and libc6 do.
start techops-lab-secfix
cat >"$work/techops-lab-secfix/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -n "${2:-}" ]; then
    touch /run/reboot-required
    echo techops-lab-secfix >>/run/reboot-required.pkgs
fi
SCRIPT
chmod 0755 "$work/techops-lab-secfix/DEBIAN/postinst"
finish techops-lab-secfix security

index() {
    dir=$repo/$1
    (cd "$dir" && dpkg-scanpackages -m . 2>/dev/null >Packages && gzip -9nc Packages >Packages.gz)
    {
        echo "Origin: TechOps-Lab"
        echo "Label: TechOps-Lab"
        echo "Suite: $2"
        echo "Codename: $2"
        echo "Date: $(LC_ALL=C date -u '+%a, %d %b %Y %H:%M:%S UTC')"
        echo "SHA256:"
        for f in Packages Packages.gz; do
            echo " $(sha256sum "$dir/$f" | cut -d' ' -f1) $(stat -c %s "$dir/$f") $f"
        done
    } >"$dir/Release"
}
index main lab
index security lab-security

# Build and install the daemons, their systemd units, QEMU discovery files and man pages.
# The daemons are the units in systemd/ (vhost-user-NAME@.service), each linked with the Swift
# standard library and Foundation inside (--static-swift-stdlib): installed, they need only Debian's
# own shared libraries (libsystemd, libseccomp, liburing, libasound, libpipewire, libc, libstdc++).
#   make                      release build of every daemon
#   make install PREFIX=/usr DESTDIR=/tmp/pkg
#   make check-units          systemd-analyze verify + security (exposure <= 2.0 for every service)
#   make check-install        install into a temporary DESTDIR and check the tree it lays out (and
#                             that the daemons load only the system's libraries)
PREFIX ?= /usr/local
DESTDIR ?=
LIBEXECDIR ?= $(PREFIX)/libexec
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
MAX_EXPOSURE ?= 2.0

DAEMONS := $(patsubst systemd/vhost-user-%@.service,%,$(wildcard systemd/vhost-user-*@.service))
# A build directory of its own: the installed daemons are linked differently from the development
# builds in .build (so neither relinks the other's), and the systemd tests can install them while
# `swift test` holds .build.
SCRATCH := .build-install
BUILDDIR := $(SCRATCH)/release

.PHONY: all build install check-units check-man check-install
all: build

build:
	for d in $(DAEMONS); do swift build -c release --static-swift-stdlib --scratch-path $(SCRATCH) --product vhost-user-$$d || exit 1; done

# Installed on the running system (no DESTDIR), the sockets' group is created at once
# (systemd-sysusers); a package does that in its postinst, a fresh root on its first boot.
install: build
	install -d $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(DATADIR)/qemu/vhost-user \
		$(DESTDIR)$(MANDIR)/man7 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DATADIR)/doc/vhost-user-devices/examples
	for d in $(DAEMONS); do \
		install -m 0755 $(BUILDDIR)/vhost-user-$$d $(DESTDIR)$(LIBEXECDIR)/ && \
		sed 's|@LIBEXECDIR@|$(LIBEXECDIR)|g' systemd/vhost-user-$$d@.service > $(DESTDIR)$(SYSTEMDUNITDIR)/vhost-user-$$d@.service && \
		install -m 0644 systemd/vhost-user-$$d@.socket $(DESTDIR)$(SYSTEMDUNITDIR)/ && \
		sed 's|@LIBEXECDIR@|$(LIBEXECDIR)|g' share/qemu/vhost-user/50-vhost-user-$$d.json.in > $(DESTDIR)$(DATADIR)/qemu/vhost-user/50-vhost-user-$$d.json && \
		install -m 0644 man/vhost-user-$$d.8 $(DESTDIR)$(MANDIR)/man8/ && \
		install -m 0644 systemd/$$d.conf.example $(DESTDIR)$(DATADIR)/doc/vhost-user-devices/examples/ || exit 1; \
	done
	install -m 0644 man/vhost-user-devices.7 $(DESTDIR)$(MANDIR)/man7/
	install -m 0644 systemd/vhost-user-devices.sysusers $(DESTDIR)$(SYSUSERSDIR)/vhost-user-devices.conf
	if [ -z "$(DESTDIR)" ] && command -v systemd-sysusers > /dev/null; then systemd-sysusers $(SYSUSERSDIR)/vhost-user-devices.conf; fi
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/*.service $(DESTDIR)$(DATADIR)/qemu/vhost-user/*.json

check-units:
	tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	for d in $(DAEMONS); do \
		sed 's|@LIBEXECDIR@|/bin|; s|^ExecStart=/bin/vhost-user-[a-z0-9]*|ExecStart=/bin/true|' systemd/vhost-user-$$d@.service > $$tmp/vhost-user-$$d@.service && \
		cp systemd/vhost-user-$$d@.socket $$tmp/ || exit 1; \
	done && cd $$tmp && \
	for d in $(DAEMONS); do \
		out=$$(systemd-analyze verify --man=no ./vhost-user-$$d@.socket ./vhost-user-$$d@.service 2>&1); \
		if [ -n "$$out" ]; then echo "$$out"; echo "systemd-analyze verify: vhost-user-$$d units have problems" >&2; exit 1; fi; \
		score=$$(systemd-analyze security --offline=true ./vhost-user-$$d@.service 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p'); \
		echo "vhost-user-$$d@.service: exposure $$score"; \
		awk -v s="$$score" -v m="$(MAX_EXPOSURE)" 'BEGIN { exit !(s != "" && s <= m) }' || { echo "exposure $$score is above $(MAX_EXPOSURE)" >&2; exit 1; }; \
	done

check-man:
	scripts/generate-man --check
	for page in man/*.[78]; do man -l $$page > /dev/null || exit 1; done

check-install:
	tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	$(MAKE) --no-print-directory install DESTDIR=$$tmp PREFIX=/usr > /dev/null && \
	for d in $(DAEMONS); do \
		for f in usr/libexec/vhost-user-$$d usr/lib/systemd/system/vhost-user-$$d@.service \
			usr/lib/systemd/system/vhost-user-$$d@.socket usr/share/qemu/vhost-user/50-vhost-user-$$d.json \
			usr/share/man/man8/vhost-user-$$d.8 usr/share/doc/vhost-user-devices/examples/$$d.conf.example \
			usr/lib/sysusers.d/vhost-user-devices.conf; do \
			test -f $$tmp/$$f || { echo "missing after install: /$$f" >&2; exit 1; }; \
		done; \
		man -l $$tmp/usr/share/man/man8/vhost-user-$$d.8 > /dev/null || exit 1; \
		grep -q '"binary": "/usr/libexec/vhost-user-'$$d'"' $$tmp/usr/share/qemu/vhost-user/50-vhost-user-$$d.json || { echo "50-vhost-user-$$d.json names the wrong binary" >&2; exit 1; }; \
		outside=$$(ldd $$tmp/usr/libexec/vhost-user-$$d | awk '/not found/ || ($$2 == "=>" && $$3 !~ /^\/(usr\/)?lib/) { print }'); \
		[ -z "$$outside" ] || { echo "vhost-user-$$d loads libraries from outside the system's library directories:" >&2; echo "$$outside" >&2; exit 1; }; \
		type=$$($$tmp/usr/libexec/vhost-user-$$d --print-capabilities | sed -n 's/.*"type": "\(.*\)".*/\1/p'); \
		grep -q '"type": "'$$type'"' $$tmp/usr/share/qemu/vhost-user/50-vhost-user-$$d.json || { echo "vhost-user-$$d: capabilities type $$type differs from its descriptor" >&2; exit 1; }; \
		echo "vhost-user-$$d: installed (binary with system libraries only, units, descriptor type $$type, man page)"; \
	done && man -l $$tmp/usr/share/man/man7/vhost-user-devices.7 > /dev/null

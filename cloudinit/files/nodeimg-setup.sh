#!/bin/sh
# nodeimg-setup: first-boot configuration of a nodeimg machine (generated).
#   nodeimg-setup local    steps that need no network; run once by cloud-init (runcmd)
#   nodeimg-setup online   steps that need the internet (apt, snap); run by
#                          nodeimg-online.service, retried with backoff until all are done
#   nodeimg-setup status   print the state of every step
#   nodeimg-setup check-nfs  whether the NFS export answers as the release step needs
#   nodeimg-setup failover   complete the eviction of signing pods from dead nodes
#                            (masters, automatic failover; nodeimg-failover.timer)
# The state of every step is one line of $STATUS_FILE:
#   STEP STATE ATTEMPTS UNIX-TIME MESSAGE
# STATE is pending, running, done, skipped, waiting (for a package or an earlier
# step), retrying (failed, tried again later) or failed (a local step; cloud-init
# reports it).
set -u
# shellcheck source=/dev/null
. /etc/nodeimg/setup.env
STATE_DIR=/var/lib/nodeimg/steps
LOG_DIR=/var/log/nodeimg
export DEBIAN_FRONTEND=noninteractive
APT_OPTS="-o DPkg::Lock::Timeout=300 -o Acquire::Retries=3 -o Acquire::http::Timeout=30 -o Acquire::https::Timeout=30 -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef"

is_k8s() { [ "$NODEIMG_ROLE" = master ] || [ "$NODEIMG_ROLE" = worker ]; }

{# The step lists, the states' words and the paths come from nodeimg
   (src/firstboot.rs): plain words, pasted as they are (`| safe`); the
   Calico interfaces below are quoted like any other value. -#}
{%- set s = firstboot.steps -%}
{%- set st = firstboot.states -%}
LOCAL_STEPS="{{ s.everywhere.local | join(sep=" ") | safe }}"
ONLINE_STEPS="{{ s.everywhere.online | join(sep=" ") | safe }}"
if [ "$NODEIMG_ROLE" = nfs ]; then
  LOCAL_STEPS="$LOCAL_STEPS {{ s.nfs.local | join(sep=" ") | safe }}"
  ONLINE_STEPS="$ONLINE_STEPS {{ s.nfs.online | join(sep=" ") | safe }}"
else
  ONLINE_STEPS="$ONLINE_STEPS {{ s.kubernetes.online | join(sep=" ") | safe }}"
fi
ALL_STEPS="{{ s.everywhere.all | join(sep=" ") | safe }}"
if [ "$NODEIMG_ROLE" = nfs ]; then ALL_STEPS="$ALL_STEPS {{ s.nfs.all | join(sep=" ") | safe }}"; else ALL_STEPS="$ALL_STEPS {{ s.kubernetes.all | join(sep=" ") | safe }}"; fi
# The first master installs the staking release once the cluster can run it.
if [ "$NODEIMG_MACHINE" = "$FIRST_MASTER" ]; then
  ONLINE_STEPS="$ONLINE_STEPS {{ s.first_master.online | join(sep=" ") | safe }}"
  ALL_STEPS="$ALL_STEPS {{ s.first_master.all | join(sep=" ") | safe }}"
fi
if [ "$NODEIMG_ROLE" = master ]; then
  LOCAL_STEPS="$LOCAL_STEPS {{ s.masters.local | join(sep=" ") | safe }}"
  ALL_STEPS="$ALL_STEPS {{ s.masters.all | join(sep=" ") | safe }}"
fi
KEYS_STAGING={{ firstboot.keys_staging | safe }}
RELEASE_DIR={{ firstboot.release_dir | safe }}

log() {
  echo "nodeimg-setup: $*"
  logger -t nodeimg-setup -- "$*" 2>/dev/null || true
}

# The message a step leaves for the status line: why it waits or failed.
MESSAGE=""
say() { MESSAGE="$*"; }

# Shell builtins only where the status is read and written: every step
# records itself twice, and a process costs much on a slow first boot.
state_of() {
  if [ -f "$STATE_DIR/$1" ] && read -r state _ < "$STATE_DIR/$1"; then echo "$state"; else echo {{ st.pending | safe }}; fi
}
attempts_of() {
  if [ -f "$STATE_DIR/$1" ] && read -r _ attempts _ < "$STATE_DIR/$1"; then echo "$attempts"; else echo 0; fi
}
is_settled() { case "$(state_of "$1")" in {{ firstboot.settled | join(sep="|") | safe }}) return 0 ;; *) return 1 ;; esac; }

write_status() {
  [ -d "${STATUS_FILE%/*}" ] || mkdir -p "${STATUS_FILE%/*}"
  for s in $ALL_STEPS; do
    if [ -f "$STATE_DIR/$s" ] && IFS= read -r line < "$STATE_DIR/$s"; then
      printf '%s %s\n' "$s" "$line"
    else
      printf '%s {{ st.pending | safe }} 0 0 {{ firstboot.no_message | safe }}\n' "$s"
    fi
  done > "$STATUS_FILE.tmp" && mv "$STATUS_FILE.tmp" "$STATUS_FILE"
}

record() { # STEP STATE ATTEMPTS MESSAGE
  msg=$(printf '%s' "$4" | tr '\n\r\t' '   ' | cut -c1-{{ firstboot.status_message_max }})
  [ -n "$msg" ] || msg={{ firstboot.no_message | safe }}
  printf '%s %s %s %s\n' "$2" "$3" "$(date +%s)" "$msg" > "$STATE_DIR/$1.tmp" && mv "$STATE_DIR/$1.tmp" "$STATE_DIR/$1"
  write_status
}

# run_step STEP: 0 done/skipped, 1 failed, 2 waiting.
run_step() {
  step=$1
  n=$(( $(attempts_of "$step") + 1 ))
  MESSAGE=""
  # A long attempt shows as running, never as silence.
  record "$step" {{ st.running | safe }} "$n" "attempt $n started"
  fn=step_$(echo "$step" | tr '-' '_')
  "$fn" >> "$LOG_DIR/$step.log" 2>&1
  rc=$?
  case $rc in
    0) record "$step" "{{ st.done | safe }}" "$n" "$MESSAGE"; log "$step: {{ st.done | safe }}" ;;
    3) record "$step" {{ st.skipped | safe }} "$n" "$MESSAGE"; rc=0; log "$step: {{ st.skipped | safe }} ($MESSAGE)" ;;
    2) record "$step" {{ st.waiting | safe }} "$n" "$MESSAGE"; log "$step: {{ st.waiting | safe }} ($MESSAGE)" ;;
    *) [ -n "$MESSAGE" ] || MESSAGE="exit $rc: $(tail -n 1 "$LOG_DIR/$step.log" 2>/dev/null)"
       record "$step" "$FAIL_STATE" "$n" "$MESSAGE"; rc=1; log "$step: $FAIL_STATE ($MESSAGE)" ;;
  esac
  return $rc
}

has_package() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# Enables UNIT, written by this boot's cloud-init, and starts it. systemd
# loads a unit it never loaded from disk when asked to start it; a
# daemon-reload, which reruns every generator (cloud-init's ds-identify among
# them) and is slow on a first boot, only when that fails (a systemd whose
# unit cache has not seen the new file).
start_new_unit() { # UNIT [START-OPTIONS]
  unit=$1; shift
  systemctl enable --no-reload "$unit" || return 1
  systemctl start "$@" "$unit" 2>/dev/null && return 0
  systemctl daemon-reload && systemctl start "$@" "$unit"
}

# ---- steps that need no network -------------------------------------------

step_ssh() {
  # sshd -t needs its privilege separation directory, which a socket-activated
  # sshd (Ubuntu 24.04) has only once ssh.service ran: made as systemd would.
  install -d -o root -g root -m 0755 /run/sshd || return 1
  if ! sshd -t; then say "sshd rejects its configuration (sshd -t)"; return 1; fi
  if systemctl is-enabled ssh.socket >/dev/null 2>&1; then
    # The socket listens (ssh.socket.d/nodeimg.conf) and hands its connections
    # to ssh.service. systemd reads the new drop-in on a daemon-reload only
    # (skipped when an earlier one did), binds its addresses when the socket
    # starts, and refuses to start a socket whose service already runs: the
    # service stops first (open sessions survive, KillMode=process) and the
    # next connection starts it again.
    if ! ssh_socket_configured; then
      systemctl daemon-reload || { say "systemctl daemon-reload failed"; return 1; }
    fi
    systemctl stop ssh.service || { say "cannot stop ssh.service"; return 1; }
    systemctl restart ssh.socket || { say "cannot restart ssh.socket"; return 1; }
  else
    systemctl restart ssh || { say "cannot restart ssh"; return 1; }
  fi
  say "listening on port $SSH_PORT, keys only"
}

# Whether systemd already holds the addresses of ssh.socket's drop-in as the
# socket's configuration (the distribution's socket has them on port 22, and
# a daemon-reload since cloud-init wrote the drop-in loaded them): then it
# needs no daemon-reload, which reruns every generator (about 10 s of a slow
# first boot). What the socket is bound to changes only when it restarts.
ssh_socket_configured() {
  dropin=/etc/systemd/system/ssh.socket.d/nodeimg.conf
  want=$({
    awk -F= '$1 == "ListenStream" && $2 != "" { print "Listen=" $2 " (Stream)" }
      $1 == "BindIPv6Only" { print }' "$dropin" || echo unreadable
  } | sort)
  have=$(systemctl show -p Listen -p BindIPv6Only ssh.socket 2>/dev/null | sort)
  [ "$have" = "$want" ]
}

# The firewall commands for this machine, one a line, arguments separated by
# tabs (a rule's comment may hold spaces): from ufw's installed defaults, so
# that a re-run gives exactly the profile's rules, to the enabled firewall.
firewall_commands() {
  t=$(printf '\t')
  printf -- '--force%sreset\n' "$t"
  printf 'default%sdeny%sincoming\n' "$t" "$t"
  printf 'default%sallow%soutgoing\n' "$t" "$t"
  # The SSH port first, so an enabled firewall never locks the operator out.
  printf 'allow%s%s/tcp%scomment%sssh\n' "$t" "$SSH_PORT" "$t" "$t"
  printf '%s\n' "$FIREWALL_RULES" | while read -r ports proto from why; do
    [ -n "$ports" ] || continue
    printf 'allow%sproto%s%s%sfrom%s%s%sto%sany%sport%s%s' \
      "$t" "$t" "$proto" "$t" "$t" "$from" "$t" "$t" "$t" "$t" "$ports"
    if [ -n "$why" ]; then printf '%scomment%s%s' "$t" "$t" "$why"; fi
    printf '\n'
  done
  if is_k8s; then
    # Pod traffic between nodes (Calico), as the MicroK8s docs ask under ufw.
    printf 'default%sallow%srouted\n' "$t" "$t"
    for iface in{% for i in firstboot.calico_interfaces %} {{ i }}{% endfor %}; do
      printf 'allow%sin%son%s%s\n' "$t" "$t" "$t" "$iface"
      printf 'allow%sout%son%s%s\n' "$t" "$t" "$t" "$iface"
    done
  fi
  printf -- '--force%senable\n' "$t"
}

# Runs the commands of FILE through ufw's own parser and frontend in one
# Python process, as `ufw` runs each (same lock, same calls), but `enable` as
# every later boot enables the firewall (ufw.service: ufw-init loads the
# rules files): `ufw enable` also applies again, one iptables call each
# (dozens), the logging rules those files hold. Each `ufw` call starts Python and
# probes iptables: about 3 s on a slow CPU, 16 calls for a Kubernetes node.
# The program is a root-owned file because ufw refuses to run from a path it
# cannot check (stdin: "-").
ufw_batch() {
  prog=/var/lib/nodeimg/ufw-batch.py
  cat > "$prog" <<'PY' || return 1
import gettext
import sys

import ufw.common
import ufw.frontend
import ufw.util

gettext.install(ufw.common.programName)
ui = ufw.frontend.UFWFrontend(False)
lock = ufw.util.create_lock(lockfile="/run/ufw.lock")
try:
    with open(sys.argv[1]) as commands:
        for line in commands:
            parsed = ufw.frontend.parse_command(["ufw"] + line.rstrip("\n").split("\t"))
            data = parsed.data
            if parsed.action == "enable":
                ui.backend.set_default(ui.backend.files["conf"], "ENABLED", "yes")
                rc, out = ufw.util.cmd([ui.backend.files["init"], "start"])
                print(out)
                if rc != 0:
                    sys.exit("ufw-init start failed")
                continue
            print(ui.do_action(parsed.action, data.get("rule", ""), data.get("iptype", ""), parsed.force))
            if parsed.action == "reset":
                # reset puts back the files, not the rules ufw holds in memory.
                ui = ufw.frontend.UFWFrontend(False)
finally:
    ufw.util.release_lock(lock)
PY
  python3 "$prog" "$1"
}

# The same commands, one `ufw` call each.
ufw_one_by_one() {
  t=$(printf '\t')
  while read -r line; do
    # Split at tabs only; no globbing.
    set -f; old_ifs=$IFS; IFS=$t
    # shellcheck disable=SC2086
    set -- $line
    IFS=$old_ifs; set +f
    ufw "$@" || return 1
  done < "$1"
}

step_firewall() {
  if ! command -v ufw >/dev/null 2>&1; then say "package ufw not installed yet"; return 2; fi
  commands=/var/lib/nodeimg/firewall.commands
  firewall_commands > "$commands" || return 1
  how="one batch"
  if ! ufw_batch "$commands"; then
    # ufw's Python interface changed: the commands one by one instead (the
    # first resets what the batch may have done).
    log "firewall: the ufw batch failed; one ufw call per rule"
    ufw_one_by_one "$commands" || return 1
    how="one ufw call per rule"
  fi
  say "active ($how)"
}

step_chrony() {
  if ! command -v chronyd >/dev/null 2>&1; then say "package chrony not installed yet"; return 2; fi
  # `enable` reloads systemd and runs update-rc.d: slow, so only when needed.
  systemctl is-enabled --quiet chrony 2>/dev/null || systemctl enable chrony >/dev/null 2>&1 || true
  systemctl restart chrony || { say "cannot restart chrony"; return 1; }
  say "pools from the profile"
}

step_nfs_exports() {
  for f in $NFS_FOLDERS; do
    mkdir -p "$NFS_EXPORT_ROOT/$f" || return 1
    chown "$NFS_UID:$NFS_GID" "$NFS_EXPORT_ROOT/$f" || return 1
    chmod 0770 "$NFS_EXPORT_ROOT/$f" || return 1
  done
  chown "$NFS_UID:$NFS_GID" "$NFS_EXPORT_ROOT" || return 1
  place_validator_keys || { say "cannot place the validator keys"; return 1; }
  if ! command -v exportfs >/dev/null 2>&1; then say "package nfs-kernel-server not installed yet"; return 2; fi
  systemctl is-enabled --quiet nfs-server 2>/dev/null || systemctl enable nfs-server >/dev/null 2>&1 || true
  systemctl start nfs-server || { say "cannot start nfs-server"; return 1; }
  exportfs -ra || { say "exportfs -ra failed"; return 1; }
  say "$NFS_EXPORT_ROOT exported"
}

# Moves each group's keystores and password from the seed's staging folder
# into the group's data folder, owned by the workload, readable by it only.
# With a remote signer they go to its one folder instead, each keystore as
# GROUP.KEYSTORE.json with passwords/GROUP.KEYSTORE.txt (Web3Signer's
# layout; group names hold no dot), and the validators' folders get none.
place_validator_keys() {
  [ -d "$KEYS_STAGING" ] || return 0
  for g in "$KEYS_STAGING"/*; do
    [ -d "$g" ] || continue
    group=$(basename "$g")
    if [ -n "${SIGNER_KEYS_FOLDER:-}" ]; then
      dest="$NFS_EXPORT_ROOT/$SIGNER_KEYS_FOLDER"
      prefix="$group."
    else
      dest="$NFS_EXPORT_ROOT/validator-$group"
      prefix=""
    fi
    install -d -o "$NFS_UID" -g "$NFS_GID" -m 0700 "$dest/keystores" || return 1
    for k in "$g"/keystores/*.json; do
      [ -f "$k" ] || continue
      name="$prefix$(basename "$k" .json)"
      install -o "$NFS_UID" -g "$NFS_GID" -m 0600 "$k" "$dest/keystores/$name.json" || return 1
      if [ -n "$prefix" ] || [ "${CONSENSUS_CLIENT:-}" = teku ]; then
        # Web3Signer and Teku read KEYSTORE.json with passwords/KEYSTORE.txt.
        install -d -o "$NFS_UID" -g "$NFS_GID" -m 0700 "$dest/passwords" || return 1
        install -o "$NFS_UID" -g "$NFS_GID" -m 0600 "$g/password.txt" "$dest/passwords/$name.txt" || return 1
      fi
    done
    [ -n "$prefix" ] || install -o "$NFS_UID" -g "$NFS_GID" -m 0600 "$g/password.txt" "$dest/password.txt" || return 1
  done
  # The keys now live in the data folders only.
  rm -rf "$KEYS_STAGING"
}

# ---- steps of nodeimg-online.service ---------------------------------------

# cloud-init keeps the seed's user-data (the host key, the join token and, on
# the NFS server, the validator keys and their password) in its instance
# folder, its pickled datasource and /run. Once cloud-init is done and the keys
# are in place, those copies go, and so does the seed partition of a flashed
# disk image. cloud-init is then turned off: everything it wrote stays, and
# without its seed a later boot would take the machine for a new instance.
step_forget_seed() {
  if [ -d "$KEYS_STAGING" ]; then say "after the validator keys are placed (nfs-exports)"; return 2; fi
  touch /etc/cloud/cloud-init.disabled || { say "cannot turn cloud-init off"; return 1; }
  for d in /var/lib/cloud/instances/*/; do
    [ -d "$d" ] || continue
    rm -f "$d"user-data.txt "$d"user-data.txt.i "$d"vendor-data.txt "$d"vendor-data.txt.i \
      "$d"vendor-data2.txt "$d"vendor-data2.txt.i "$d"cloud-config.txt "$d"vendor-cloud-config.txt \
      "$d"vendor2-cloud-config.txt "$d"obj.pkl || return 1
  done
  rm -f /run/cloud-init/instance-data-sensitive.json /run/cloud-init/combined-cloud-config.json \
    /run/cloud-init/instance-data.json /var/lib/cloud/data/instance-data-sensitive.json || return 1
  # A GPT partition named cidata is the seed partition of nodeimg's disk image.
  seed=/dev/disk/by-partlabel/cidata
  if [ -b "$seed" ]; then
    size=$(blockdev --getsize64 "$seed") || return 1
    if ! head -c "$size" /dev/zero > "$seed"; then say "cannot wipe the seed partition $seed"; return 1; fi
    sync
    say "cloud-init's copies of the seed removed, the seed partition wiped, cloud-init off"
  else
    say "cloud-init's copies of the seed removed, cloud-init off; wipe the seed medium (README)"
  fi
}

# ---- steps that need the internet -----------------------------------------

# apt-get update exits 0 even when no index could be fetched: read its output.
step_apt_update() {
  if [ "$APT_UPDATE" != true ]; then say "apt.update is off in the profile"; return 3; fi
  # shellcheck disable=SC2086
  out=$(timeout 900 apt-get $APT_OPTS update 2>&1); rc=$?
  printf '%s\n' "$out"
  if [ $rc -ne 0 ] || printf '%s\n' "$out" | grep -Eq '^(W|E): (Failed to fetch|Some index files failed)'; then
    say "no package index reachable (offline?)"; return 1
  fi
}

step_apt_upgrade() {
  if [ "$APT_UPGRADE" != true ]; then say "apt.upgrade is off in the profile"; return 3; fi
  if ! is_settled apt-update; then say "after apt-update"; return 2; fi
  # shellcheck disable=SC2086
  timeout 3600 apt-get $APT_OPTS -y dist-upgrade || { say "apt-get dist-upgrade failed"; return 1; }
  # shellcheck disable=SC2086
  timeout 900 apt-get $APT_OPTS -y autoremove || { say "apt-get autoremove failed"; return 1; }
  if [ -f /var/run/reboot-required ]; then say "upgraded; a reboot is required to finish"; fi
}

step_packages() {
  missing=""
  for p in $PACKAGES; do has_package "$p" || missing="$missing $p"; done
  if [ -z "$missing" ]; then say "all installed"; return 0; fi
  if [ "$APT_UPDATE" = true ] && ! is_settled apt-update; then say "after apt-update:$missing"; return 2; fi
  # shellcheck disable=SC2086
  timeout 1800 apt-get $APT_OPTS -y install $missing || { say "cannot install$missing"; return 1; }
  say "installed$missing"
}

step_microk8s() {
  if ! command -v snap >/dev/null 2>&1; then say "package snapd not installed yet"; return 2; fi
  if ! snap list microk8s >/dev/null 2>&1; then
    [ -f /etc/microk8s.yaml ] || { say "launch configuration /etc/microk8s.yaml is missing"; return 1; }
    timeout 600 snap wait system seed.loaded || { say "snapd is not seeded yet"; return 1; }
    timeout 1800 snap install microk8s --classic --channel="$MICROK8S_CHANNEL" || {
      say "snap install microk8s --channel=$MICROK8S_CHANNEL failed (snap store unreachable?)"; return 1; }
  fi
  if [ "$MICROK8S_HOLD" = true ]; then
    snap refresh --hold microk8s >/dev/null 2>&1 || log "snap refresh --hold is not supported by this snapd"
  fi
  usermod -a -G microk8s "$SSH_USER" || return 1
  home=$(getent passwd "$SSH_USER" | cut -d: -f6)
  if [ -n "$home" ]; then
    mkdir -p "$home/.kube" || return 1
    chown "$SSH_USER" "$home/.kube" || return 1
    chmod 0700 "$home/.kube"
  fi
  say "installed from $MICROK8S_CHANNEL"
}

# The cluster agent renames the launch file to *.applied once the addons and
# the join went through; it retries on its own (workers may boot first). A
# joining machine is judged by what it has become, not by that rename alone
# (canonical/microk8s-cluster-agent#76 leaves a joined node's file unapplied).
step_microk8s_launch() {
  if ! is_settled microk8s; then say "after microk8s"; return 2; fi
  if [ "$NODEIMG_MACHINE" = "$FIRST_MASTER" ]; then
    if ! ls /var/snap/microk8s/common/etc/launcher/*.applied >/dev/null 2>&1; then
      say "launch configuration not applied yet"; return 1
    fi
    timeout 600 microk8s status --wait-ready >/dev/null || { say "MicroK8s is not ready yet"; return 1; }
    say "control plane ready"
  elif [ "$NODEIMG_ROLE" = master ]; then
    # Before its join a master runs a cluster of its own, which has no node
    # named after the first master.
    if ! timeout 120 microk8s kubectl get node "$FIRST_MASTER" >/dev/null 2>&1; then
      say "not in the control plane of $FIRST_MASTER yet"; return 1
    fi
    say "joined the control plane of $FIRST_MASTER"
  else
    # `microk8s join --worker` leaves this lock (join.py, mark_worker_node).
    if [ ! -e /var/snap/microk8s/current/var/lock/clustered.lock ]; then
      say "not joined to $FIRST_MASTER yet"; return 1
    fi
    say "joined the cluster as a worker"
  fi
}

# The remote signer's slashing-protection database: PostgreSQL from the
# distribution, one role and database for Web3Signer, reachable from the
# cluster subnet only (scram-sha-256), and Web3Signer's migrations applied
# in file-name order, each once, recorded in the database with its sha256.
signer_psql() { # DATABASE ARGS...: psql as the postgres superuser
  db=$1; shift
  (cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d "$db" "$@")
}

step_signer_db() {
  if [ "$SIGNER_DB" != true ]; then say "the profile's validator clients sign themselves"; return 3; fi
  if ! has_package postgresql; then say "package postgresql not installed yet"; return 2; fi
  conf=""
  # The package's cluster (one version: the distribution's).
  for c in /etc/postgresql/*/main; do [ -f "$c/postgresql.conf" ] && conf=$c; done
  if [ -z "$conf" ]; then say "no PostgreSQL cluster in /etc/postgresql"; return 1; fi
  ver=$(basename "$(dirname "$conf")")
  mkdir -p "$conf/conf.d" || return 1
  grep -Eq "^[[:space:]]*include_dir[[:space:]]*=[[:space:]]*'conf.d'" "$conf/postgresql.conf" ||
    printf "include_dir = 'conf.d'\n" >> "$conf/postgresql.conf" || return 1
  printf '%s\n' "# nodeimg: Web3Signer reaches its database on the cluster address" \
    "listen_addresses = 'localhost,$NFS_SERVER'" "port = $SIGNER_DB_PORT" \
    "password_encryption = 'scram-sha-256'" > "$conf/conf.d/60-nodeimg.conf" || return 1
  # The first matching line wins and none before it matches the subnet: every
  # other role, database or address is refused.
  hba="host $SIGNER_DB_NAME $SIGNER_DB_USER $SUBNET scram-sha-256"
  grep -qxF "$hba" "$conf/pg_hba.conf" || printf '%s\n' "$hba" >> "$conf/pg_hba.conf" || return 1
  systemctl enable postgresql >/dev/null 2>&1
  systemctl restart postgresql || { say "cannot restart postgresql"; return 1; }
  tries=0
  until signer_psql postgres -c 'SELECT 1' >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ $tries -ge 120 ]; then say "PostgreSQL $ver does not answer"; return 1; fi
    sleep 1
  done
  # The password on standard input, never on a command line; a failing
  # statement is not logged with it.
  signer_psql postgres <<EOF || { say "cannot create the role and database $SIGNER_DB_NAME"; return 1; }
SET log_min_error_statement = panic;
SET password_encryption = 'scram-sha-256';
SELECT 'CREATE ROLE $SIGNER_DB_USER LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$SIGNER_DB_USER')\gexec
ALTER ROLE $SIGNER_DB_USER PASSWORD '$SIGNER_DB_PASSWORD';
SELECT 'CREATE DATABASE $SIGNER_DB_NAME OWNER $SIGNER_DB_USER' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$SIGNER_DB_NAME')\gexec
EOF
  signer_psql "$SIGNER_DB_NAME" -c "CREATE SCHEMA IF NOT EXISTS nodeimg" \
    -c "CREATE TABLE IF NOT EXISTS nodeimg.migrations (file text PRIMARY KEY, sha256 text NOT NULL, applied timestamptz NOT NULL DEFAULT now())" ||
    { say "cannot record migrations in $SIGNER_DB_NAME"; return 1; }
  total=0; new=0
  # dash sorts a glob byte by byte: the zero-padded numbers keep the order.
  for f in "$SIGNER_DB_MIGRATIONS"/V*.sql; do
    [ -f "$f" ] || continue
    name=${f##*/}
    sum=$(sha256sum "$f" | cut -d' ' -f1)
    was=$(signer_psql "$SIGNER_DB_NAME" -At -c "SELECT sha256 FROM nodeimg.migrations WHERE file = '$name'") || return 1
    total=$((total + 1))
    if [ -n "$was" ]; then
      [ "$was" = "$sum" ] || { say "migration $name was applied with other content ($was)"; return 1; }
      continue
    fi
    # One transaction a file: its objects belong to the signer's role, and
    # the record commits with them or not at all.
    signer_psql "$SIGNER_DB_NAME" -1 -c "SET ROLE $SIGNER_DB_USER" -f "$f" -c "RESET ROLE" \
      -c "INSERT INTO nodeimg.migrations (file, sha256) VALUES ('$name', '$sum')" ||
      { say "migration $name failed (see $LOG_DIR/signer-db.log)"; return 1; }
    new=$((new + 1))
  done
  version=$(signer_psql "$SIGNER_DB_NAME" -At -c "SELECT version FROM database_version WHERE id = 1" 2>/dev/null)
  say "PostgreSQL $ver on $NFS_SERVER:$SIGNER_DB_PORT for $SUBNET: $SIGNER_DB_NAME at database_version ${version:-none}, $total migrations ($new applied now)"
}

# The export mounts as the persistent volumes will: NFSv4, over 2049/tcp only
# (the one port the NFS server's firewall opens; showmount would need rpcbind).
nfs_export_answers() {
  command -v mount.nfs4 >/dev/null 2>&1 || { log "nfs-common is not installed yet"; return 1; }
  mkdir -p /run/nodeimg || return 1
  mnt=$(mktemp -d /run/nodeimg/nfs-check.XXXXXX) || return 1
  timeout 60 mount -t nfs4 -o ro,timeo=50,retrans=2 "$NFS_SERVER:$NFS_EXPORT_ROOT" "$mnt"
  rc=$?
  if [ $rc -eq 0 ]; then umount "$mnt" || umount -l "$mnt"; fi
  rmdir "$mnt" 2>/dev/null
  return $rc
}

# The staking release, from the charts and values in the seed: once
# MicroK8s runs, a worker is Ready and the NFS export answers. Idempotent
# (helm upgrade --install); retried with the other online steps.
step_release() {
  if [ "$STAKING" = legacy ]; then say "the eth2xk8s chart is installed by hand (install.sh of nodeimg release)"; return 3; fi
  if [ "$STAKING" != true ]; then say "the profile has no staking section"; return 3; fi
  if ! is_settled microk8s-launch; then say "after microk8s-launch"; return 2; fi
  ready=$(microk8s kubectl get nodes --no-headers 2>/dev/null |
    awk -v me="$NODEIMG_MACHINE" '$1 != me && $2 == "Ready"' | wc -l)
  if [ "$ready" -eq 0 ]; then say "waiting for a Ready worker"; return 1; fi
  if ! nfs_export_answers; then
    say "waiting for the NFS export $NFS_SERVER:$NFS_EXPORT_ROOT (NFSv4, port 2049)"; return 1
  fi
  cd "$RELEASE_DIR" || { say "$RELEASE_DIR is missing"; return 1; }
{#- The release directory's file names come from src/firstboot.rs. #}
{%- set r = firstboot.release %}
  microk8s kubectl apply -f {{ r.storage | safe }} || { say "kubectl apply -f {{ r.storage | safe }} failed"; return 1; }
  # The remote signer's database password, as a Secret (the file is 0600).
  if [ -f {{ r.signer_secret | safe }} ]; then
    microk8s kubectl apply -f {{ r.signer_secret | safe }} >/dev/null || { say "kubectl apply -f {{ r.signer_secret | safe }} failed"; return 1; }
  fi
  installed=""
  while read -r name chart values jwt; do
    [ -n "$name" ] || continue
    set -- upgrade --install "$name" "{{ r.charts | safe }}/$chart" -n "$STAKING_NAMESPACE" -f "$values"
    [ "$jwt" = yes ] && set -- "$@" --set-file "{{ r.jwt_key | safe }}={{ r.jwt | safe }}"
    timeout 600 microk8s helm3 "$@" || { say "helm upgrade --install $name failed"; return 1; }
    installed="$installed $name"
  done < {{ r.list | safe }}
  say "installed:$installed"
}

# ---- failover (masters) ---------------------------------------------------

step_failover() {
  if [ "${FAILOVER:-manual}" != automatic ]; then say "manual: the signing pods of a dead node wait for you (README: Redundancy)"; return 3; fi
  start_new_unit nodeimg-failover.timer || { say "cannot start nodeimg-failover.timer"; return 1; }
  say "signing pods of a node unreachable for $FAILOVER_AFTER s move"
}

# Kubernetes evicts a signing pod FAILOVER_AFTER seconds after its node
# became unreachable (the pod's tolerations), but a StatefulSet's pod stays
# Terminating until the dead node's kubelet confirms: its replacement never
# starts. With the remote signer, whose database refuses a second signature,
# a master completes that eviction: it force-deletes the pods of the signing
# releases that Kubernetes already evicted from a node whose Ready condition
# has been Unknown (no heartbeat) for FAILOVER_AFTER seconds. A node that
# reports NotReady still runs its kubelet, which stops the pods itself.
failover() {
  [ "${FAILOVER:-manual}" = automatic ] || return 0
  command -v microk8s >/dev/null 2>&1 || return 0
  now=$(date +%s)
  nodes=$(microk8s kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{" "}{.status.conditions[?(@.type=="Ready")].lastTransitionTime}{"\n"}{end}') || return 1
  pods=""
  echo "$nodes" | while read -r node ready since; do
    [ "$ready" = Unknown ] || continue
    at=$(date -d "$since" +%s 2>/dev/null) || continue
    [ $((now - at)) -ge "$FAILOVER_AFTER" ] || continue
    [ -n "$pods" ] || pods=$(microk8s kubectl -n "$STAKING_NAMESPACE" get pods -o jsonpath='{range .items[?(@.metadata.deletionTimestamp)]}{.metadata.name}{" "}{.spec.nodeName}{" "}{.metadata.labels.app\.kubernetes\.io/instance}{"\n"}{end}') || return 1
    echo "$pods" | while read -r pod on release; do
      [ "$on" = "$node" ] || continue
      case " $FAILOVER_RELEASES " in *" $release "*) ;; *) continue ;; esac
      log "failover: $pod ($release) was evicted from $node, unreachable since $since: deleting it so that its StatefulSet starts it on a healthy node"
      microk8s kubectl -n "$STAKING_NAMESPACE" delete pod "$pod" --grace-period=0 --force --wait=false
    done
  done
}

# ---- entry points ---------------------------------------------------------

mkdir -p "$STATE_DIR" "$LOG_DIR"
case "${1:-}" in
  local)
    FAIL_STATE={{ st.failed | safe }}
    failed=0
    # The journal's times of this line and the steps' lines tell where a
    # first boot spends its time (scripts/bench-boot).
    log "local steps: $LOCAL_STEPS"
    for s in $LOCAL_STEPS; do
      run_step "$s"
      [ $? -eq 1 ] && failed=1
    done
    write_status
    # Enabled for the boots to come, started for this one (--no-block: it
    # starts after cloud-final, so cloud-init finishes first).
    start_new_unit nodeimg-online.service --no-block
    log "local steps finished; nodeimg-online.service started"
    exit $failed
    ;;
  online)
    FAIL_STATE={{ st.retrying | safe }}
    delay=15
    while :; do
      pending=0
      for s in $ONLINE_STEPS; do
        is_settled "$s" && continue
        run_step "$s" || pending=1
      done
      write_status
      [ $pending -eq 0 ] && break
      sleep "$delay"
      delay=$((delay * 2)); [ $delay -gt 600 ] && delay=600
    done
    touch /var/lib/nodeimg/online.done
    log "all first-boot steps done"
    ;;
  status)
    cat "$STATUS_FILE"
    ;;
  failover)
    failover
    ;;
  check-nfs)
    # The release step's NFS condition on its own (boot-test runs it offline).
    if nfs_export_answers; then echo "NFS export $NFS_SERVER:$NFS_EXPORT_ROOT answers"; else exit 1; fi
    ;;
  *)
    echo "usage: nodeimg-setup local|online|status|check-nfs|failover" >&2
    exit 2
    ;;
esac

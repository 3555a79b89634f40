#!/bin/sh
# nodeimg boot-test probe: runs inside a booted test machine once cloud-init
# is done, and prints what it finds to the serial console, one line per
# fact: `@@P@@ KEY VALUE`. `nodeimg boot-test` compares the facts with the
# profile. Its settings come from /usr/local/lib/nodeimg-probe/env.
# It is delivered as the seed's vendor-data by boot-test only: the machine's
# own user-data, meta-data and network-config are not changed.
set -u
# shellcheck source=/dev/null
. /usr/local/lib/nodeimg-probe/env
TTY=/dev/ttyS0

out() { printf '@@P@@ %s %s\n' "$1" "$2" > "$TTY"; }
# The data folders are 0770 and the export squashes root: act as the
# workloads do, with their uid:gid.
as_workload() { setpriv --reuid="$PROBE_UID" --regid="$PROBE_GID" --clear-groups "$@"; }
each() { # KEY COMMAND...: one fact per output line
  key=$1; shift
  "$@" 2>&1 | while IFS= read -r line; do out "$key" "$line"; done
}

# The probe runs on every boot (boot-test --reboot): the first boot waits for
# cloud-init; a later one reports whether cloud-init ran again, which it must
# not (step forget-seed turned it off).
result=/run/cloud-init/result.json
reported=/usr/local/lib/nodeimg-probe/first-boot-reported
if [ -e "$reported" ]; then
  boot=later
else
  boot=first
  i=0
  while [ ! -s "$result" ] && [ $i -lt 900 ]; do sleep 1; i=$((i + 1)); done
fi
out begin "$PROBE_HOST uptime=$(cut -d' ' -f1 /proc/uptime)"
out boot "$boot"
out result "$(tr -d '\n' < "$result" 2>/dev/null)"
if [ "$boot" = later ]; then
  ran=no; [ -e /run/cloud-init/result.json ] || [ -e /run/cloud-init/status.json ] && ran=yes
  off=no; [ -e /etc/cloud/cloud-init.disabled ] && off=yes
  out cloud-init-again "ran=$ran disabled=$off"
fi
out hostname "$(hostname)"
each hosts cat /etc/hosts
each addr ip -o -4 addr show
each link ip -o link show
for f in $PROBE_FILES; do
  out file "$f $(sha256sum < "$f" 2>/dev/null | cut -d' ' -f1)"
done
each ufw ufw status verbose
each listen ss -ltnH
each hostkey ssh-keyscan -p "$PROBE_SSH_PORT" -t ed25519 127.0.0.1

# Every other machine by name; they may still be booting.
for peer in $PROBE_PEERS; do
  ok=fail
  i=0
  while [ $i -lt 180 ]; do
    if ping -c 1 -W 1 "$peer" > /dev/null 2>&1; then ok=ok; break; fi
    sleep 1; i=$((i + 1))
  done
  out peer "$peer $ok"
done

# sshd of the next machine, from here, through its firewall: on ssh.port with
# the host key pinned, and nothing on 22 (unless that is ssh.port). With a
# login key (boot-test --login-key), log in as the owner would.
known=/usr/local/lib/nodeimg-probe/known_hosts
login_key=/usr/local/lib/nodeimg-probe/login-key
if [ -n "$PROBE_SSH_TARGET" ]; then
  printf '[%s]:%s %s\n%s %s\n' "$PROBE_SSH_TARGET" "$PROBE_SSH_PORT" "$PROBE_SSH_TARGET_KEY" \
    "$PROBE_SSH_TARGET" "$PROBE_SSH_TARGET_KEY" > "$known"
  set -- -p "$PROBE_SSH_PORT" -o BatchMode=yes -o ConnectTimeout=10 -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="$known" -o GlobalKnownHostsFile=/dev/null -o LogLevel=ERROR
  if [ -f "$login_key" ]; then
    set -- "$@" -o IdentitiesOnly=yes -i "$login_key"
  else
    set -- "$@" -o PreferredAuthentications=publickey -o IdentityFile=/dev/null
  fi
  i=0
  while :; do
    said=$(timeout 60 ssh "$@" "$PROBE_SSH_USER@$PROBE_SSH_TARGET" id -un 2>&1 < /dev/null); rc=$?
    said=$(printf '%s' "$said" | tr '\n\r' '  ')
    [ $rc -eq 0 ] && { out ssh-login "$PROBE_SSH_TARGET ok $said"; break; }
    # Reached sshd, which asked for a key this probe does not have.
    if [ ! -f "$login_key" ] && printf '%s' "$said" | grep -q 'Permission denied (publickey)'; then
      out ssh-login "$PROBE_SSH_TARGET denied-without-key $said"; break
    fi
    i=$((i + 1))
    if [ $i -ge 30 ]; then out ssh-login "$PROBE_SSH_TARGET fail $said"; break; fi
    sleep 5
  done
  if [ "$PROBE_SSH_PORT" != 22 ]; then
    # shellcheck disable=SC2016  # $1 is the inner shell's argument
    if timeout 10 bash -c 'exec 3<>"/dev/tcp/$1/22"' sh "$PROBE_SSH_TARGET" 2>/dev/null; then
      out ssh-22 "$PROBE_SSH_TARGET open"
    else
      out ssh-22 "$PROBE_SSH_TARGET closed"
    fi
  fi
fi

mnt=/mnt/nodeimg-probe
case "$PROBE_ROLE" in
  nfs)
    each exports exportfs -v
    for f in $PROBE_FOLDERS; do
      out owner "$f $(stat -c %u:%g "$PROBE_EXPORT_ROOT/$f" 2>&1)"
    done
    ;;
  worker|master)
    mkdir -p "$mnt"
    i=0
    until mount -t nfs4 -o timeo=50 "$PROBE_NFS_IP:$PROBE_EXPORT_ROOT" "$mnt" 2>/dev/null; do
      i=$((i + 1)); [ $i -ge 60 ] && break; sleep 3
    done
    if ! mountpoint -q "$mnt"; then
      out nfs-mount fail
    elif [ "$PROBE_ROLE" = worker ]; then
      out nfs-mount ok
      f="$mnt/$PROBE_FOLDER/probe-$PROBE_HOST"
      if as_workload sh -c "echo $PROBE_HOST > '$f'"; then
        out nfs-write "ok $(as_workload stat -c %u:%g "$f" 2>&1)"
      else
        out nfs-write fail
      fi
    else
      out nfs-mount ok
      # Automatic failover: the failover step's timer (inactive: not installed).
      out failover-timer "$(systemctl is-active nodeimg-failover.timer 2>/dev/null)"
      # The release step's own NFS condition, through the server's firewall.
      if said=$(/usr/local/sbin/nodeimg-setup check-nfs 2>&1); then
        out release-nfs "ok $said"
      else
        out release-nfs "fail $(printf '%s' "$said" | tr '\n' ' ')"
      fi
      for w in $PROBE_WORKERS; do
        f="$mnt/$PROBE_FOLDER/probe-$w"
        i=0
        while ! as_workload test -s "$f" && [ $i -lt 300 ]; do sleep 1; i=$((i + 1)); done
        if as_workload test -s "$f"; then
          out nfs-see "$w ok $(as_workload stat -c %u:%g "$f" 2>&1)"
        else
          out nfs-see "$w fail"
        fi
      done
    fi
    umount -l "$mnt" 2>/dev/null
    ;;
esac

# The remote signer's database on the NFS server, from the first master as
# Web3Signer will reach it (the cluster network, the server's firewall):
# a login with the profile's password, the migrated tables and their version,
# and a wrong password refused. Retried while the server's signer-db step
# may still be at work.
if [ -n "${PROBE_SIGNER_DB_HOST:-}" ]; then
  # shellcheck disable=SC2153  # the settings come from the env file
  signer_db() { # PASSWORD SQL
    PGPASSWORD=$1 PGCONNECT_TIMEOUT=10 psql -X -At -v ON_ERROR_STOP=1 -h "$PROBE_SIGNER_DB_HOST" \
      -p "$PROBE_SIGNER_DB_PORT" -U "$PROBE_SIGNER_DB_USER" -d "$PROBE_SIGNER_DB_NAME" -c "$2" 2>&1 < /dev/null |
      tr '\n' ' '
  }
  password=$(printf '%s' "$PROBE_SIGNER_DB_PASSWORD" | tr 'A-Za-z0-9' 'N-ZA-Mn-za-m5-90-4')
  # Until the migrations are all in (the NFS server applies them one by one).
  i=0
  while :; do
    said=$(signer_db "$password" "SELECT 'version', version FROM database_version WHERE id = 1")
    [ "$said" = "version|$PROBE_SIGNER_DB_VERSION " ] && break
    i=$((i + 1)); [ $i -ge 60 ] && break; sleep 5
  done
  out signer-db-login "$said"
  out signer-db-tables "$(signer_db "$password" "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'")"
  out signer-db-owner "$(signer_db "$password" "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")"
  out signer-db-wrong "$(signer_db "wrong-$password" "SELECT 'accepted'")"
fi

# Validator keys: where the NFS server placed them, and no staging copy.
if [ "$PROBE_ROLE" = nfs ]; then
  for d in "$PROBE_EXPORT_ROOT"/*; do
    [ -d "$d" ] || continue
    for f in "$d"/keystores/*.json "$d"/password.txt "$d"/passwords/*.txt; do
      [ -e "$f" ] && out key "$(basename "$d") ${f#"$d"/} $(stat -c '%u:%g %a' "$f")"
    done
  done
fi
if [ -e /var/lib/nodeimg/validator-keys ]; then
  out key-staging "$(find /var/lib/nodeimg/validator-keys -mindepth 1 | tr '\n' ' ')"
else
  out key-staging absent
fi

# The internet-bound steps: give the online service time for one attempt,
# of the steps this machine's checks read too (PROBE_AWAIT).
for step in apt-update ${PROBE_AWAIT:-}; do
  i=0
  while [ $i -lt "$PROBE_ONLINE_WAIT" ]; do
    [ -f /var/lib/nodeimg/online.done ] && break
    grep -Eq "^$step (done|skipped|retrying|failed) " /var/lib/nodeimg/status 2>/dev/null && break
    sleep 1; i=$((i + 1))
  done
done
# After first boot no copy of the seed's secrets may be left (step forget-seed):
# not in cloud-init's folders, the logs or a seed partition. The markers come
# rotated (letters by 13, digits by 5), so this probe's own vendor-data, which
# cloud-init keeps too, never holds them.
i=0
while [ $i -lt "$PROBE_ONLINE_WAIT" ] &&
  ! grep -Eq '^forget-seed (done|retrying|failed) ' /var/lib/nodeimg/status 2>/dev/null; do
  sleep 1; i=$((i + 1))
done
seed=/dev/disk/by-partlabel/cidata
found=""
for rotated in $PROBE_MARKERS; do
  marker=$(printf '%s' "$rotated" | tr 'A-Za-z0-9' 'N-ZA-Mn-za-m5-90-4')
  hits=$(grep -rlF -e "$marker" /var/lib/cloud /run/cloud-init /var/log 2>/dev/null | tr '\n' ' ')
  found="$found$hits"
  if [ -b "$seed" ] && grep -qF -e "$marker" "$seed"; then found="$found$seed "; fi
done
out seed-copies "${found:-none}"
if [ -b "$seed" ]; then
  if [ "$(tr -d '\000' < "$seed" | head -c 1 | wc -c)" -eq 0 ]; then
    out seed-partition wiped
  else
    out seed-partition intact
  fi
fi
each status cat /var/lib/nodeimg/status
out online-service "$(systemctl is-active nodeimg-online.service)"
# For scripts/bench-boot: the time of each cloud-init module this boot
# and nodeimg-setup's and systemd's lines, with their times since boot.
if [ "${PROBE_TIMINGS:-0}" = 1 ]; then
  each ci-blame cloud-init analyze blame
  each setup-log journalctl -b -o short-monotonic --no-pager -q -t nodeimg-setup -t systemd
fi
if [ "$boot" = first ]; then touch "$reported" && sync; fi
out end "$PROBE_HOST"

# nodeimg first-boot settings, read by /usr/local/sbin/nodeimg-setup.
# shellcheck shell=sh disable=SC2034  # assignments only; used by nodeimg-setup
NODEIMG_MACHINE={{ machine.name }}
NODEIMG_ROLE={{ machine.role }}
STATUS_FILE={{ status_file }}
SSH_PORT={{ ssh.port }}
SSH_USER={{ ssh.user }}
APT_UPDATE={{ apt.update }}
APT_UPGRADE={{ apt.upgrade }}
PACKAGES={{ packages | join(sep=" ") }}
NFS_SERVER={{ nfs_server.ip }}
NFS_EXPORT_ROOT={{ nfs.export_root }}
NFS_UID={{ nfs.uid }}
NFS_GID={{ nfs.gid }}
NFS_FOLDERS={{ nfs.folders | join(sep=" ") }}
MICROK8S_CHANNEL={{ microk8s.channel }}
MICROK8S_HOLD={{ microk8s.hold_refresh }}
FIRST_MASTER={{ master.name }}
{%- if staking %}
STAKING={% if staking.legacy %}legacy{% else %}true{% endif %}
STAKING_NAMESPACE={{ staking.namespace }}
STAKING_GROUPS={{ staking.groups | join(sep=" ") }}
CONSENSUS_CLIENT={{ staking.consensus }}
{%- if staking.signer_folder %}
SIGNER_KEYS_FOLDER={{ staking.signer_folder }}
{%- endif %}
{%- if staking.failover %}
FAILOVER=automatic
FAILOVER_AFTER={{ staking.failover.after }}
FAILOVER_RELEASES={{ staking.failover.releases | join(sep=" ") }}
{%- else %}
FAILOVER=manual
{%- endif %}
{%- else %}
STAKING=false
{%- endif %}
{%- if signer_db %}
# The remote signer's slashing-protection database (this file is 0600).
SIGNER_DB=true
SIGNER_DB_NAME={{ signer_db.name }}
SIGNER_DB_USER={{ signer_db.user }}
SIGNER_DB_PORT={{ signer_db.port }}
SIGNER_DB_PASSWORD={{ signer_db.password }}
SIGNER_DB_MIGRATIONS={{ signer_db.migrations }}
SUBNET={{ network.subnet }}
{%- else %}
SIGNER_DB=false
{%- endif %}
# One rule a line: PORTS PROTO FROM COMMENT (PORTS comma-separated, FROM `any` or a network).
FIREWALL_RULES={% set_global rules = "" %}{% for r in firewall.rules %}{% set_global rules = rules ~ r.ports ~ " " ~ r.proto ~ " " ~ r.from ~ " " ~ r.comment ~ "
" %}{% endfor %}{{ rules }}

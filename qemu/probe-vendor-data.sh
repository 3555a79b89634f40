#!/bin/sh
# nodeimg boot-test probe (vendor-data; added by boot-test, not part of the seed)
{#- A template of boot-test (src/boottest/probe.rs): every {{ value }} is
    quoted for sh; `safe` marks text pasted verbatim into a quoted heredoc. #}
mkdir -p /usr/local/lib/nodeimg-probe
{%- if login_key %}
# Written before the probe runs; the probe only reads it.
install -d -m 0700 /usr/local/lib/nodeimg-probe
(umask 077; printf '%s\n' {{ login_key }} > /usr/local/lib/nodeimg-probe/login-key)
{%- endif %}
cat > /usr/local/lib/nodeimg-probe/env <<'NODEIMG_PROBE_EOF'
{% for setting in env -%}
{{ setting.name | safe }}={{ setting.value }}
{% endfor -%}
NODEIMG_PROBE_EOF
cat > /usr/local/lib/nodeimg-probe/probe <<'NODEIMG_PROBE_EOF'
{{ probe | safe }}NODEIMG_PROBE_EOF
chmod 0755 /usr/local/lib/nodeimg-probe/probe
# A service that reports on every boot: the first once cloud-init is done,
# later ones (boot-test --reboot) once the machine is up.
cat > /etc/systemd/system/nodeimg-probe.service <<'NODEIMG_PROBE_EOF'
[Unit]
Description=nodeimg boot-test probe
After=cloud-final.service multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/lib/nodeimg-probe/probe

[Install]
WantedBy=multi-user.target
NODEIMG_PROBE_EOF
systemctl daemon-reload
systemctl enable nodeimg-probe.service
systemctl start --no-block nodeimg-probe.service

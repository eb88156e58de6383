#!/usr/bin/env bash
# Let the current user SSH to localhost with a dedicated key, for AiiDA's core.ssh and core.ssh_async transports.
#
# Idempotent: installs openssh-server if missing (root), starts sshd if it is not running, creates
# ~/.ssh/aiida_mlip_localhost (no passphrase) once, authorises it once and records the host key.
# Used by .ci/run and by developers; examples/clusters/slurm-ssh-localhost.yaml uses the key.
set -euo pipefail

KEY="$HOME/.ssh/aiida_mlip_localhost"

if ! command -v sshd >/dev/null && [ ! -x /usr/sbin/sshd ]; then
    [ "$(id -u)" = 0 ] || { echo "ssh-localhost.sh: openssh-server is missing; run as root to install it" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null
fi
if ! pgrep -x sshd >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "ssh-localhost.sh: sshd is not running; run as root to start it" >&2; exit 1; }
    mkdir -p /run/sshd
    ssh-keygen -A >/dev/null
    /usr/sbin/sshd
fi

mkdir -p "$HOME/.ssh"
chmod 700 "$HOME/.ssh"
[ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N "" -C "aiida-mlip localhost" -f "$KEY"
touch "$HOME/.ssh/authorized_keys" "$HOME/.ssh/known_hosts"
chmod 600 "$HOME/.ssh/authorized_keys"
grep -qF "$(cut -d' ' -f2 "$KEY.pub")" "$HOME/.ssh/authorized_keys" || cat "$KEY.pub" >>"$HOME/.ssh/authorized_keys"
for _ in $(seq 20); do
    ssh-keyscan -H localhost >/dev/null 2>&1 && break
    sleep 0.5
done
ssh-keygen -F localhost -f "$HOME/.ssh/known_hosts" >/dev/null || ssh-keyscan -H localhost 2>/dev/null >>"$HOME/.ssh/known_hosts"

# a host alias that carries the key, for tools that read ~/.ssh/config (AiiDA's core.ssh_async)
touch "$HOME/.ssh/config"
chmod 600 "$HOME/.ssh/config"
if ! grep -q "^Host aiida-mlip-localhost$" "$HOME/.ssh/config"; then
    printf '\nHost aiida-mlip-localhost\n    HostName localhost\n    IdentityFile %s\n    IdentitiesOnly yes\n    BatchMode yes\n' "$KEY" >>"$HOME/.ssh/config"
fi

ssh -o BatchMode=yes -i "$KEY" localhost true
ssh aiida-mlip-localhost true
echo "ssh to localhost works with $KEY (host alias aiida-mlip-localhost)"

#!/usr/bin/env bash
# Entry point of the aiida-mlip image (service `aiida` of docker-compose.yml).
#
# 1. Waits until PostgreSQL and RabbitMQ accept TCP connections.
# 2. First start (no profile $AIIDA_MLIP_PROFILE in the AiiDA config dir): creates the profile,
#    core.psql_dos storage on the PostgreSQL database, and makes it the default.
# 3. Every start: points the profile's broker (core.rabbitmq) at the RabbitMQ service, and registers
#    what is missing of: the computer `localhost` with the engine executables as codes, pw.x as the
#    code `pw`, and the pseudopotential family $AIIDA_MLIP_PSEUDO_FAMILY built from Debian's
#    /usr/share/espresso/pseudo. All of these steps keep what exists, so a restart changes nothing.
# 4. With no arguments: runs the daemon ($AIIDA_MLIP_DAEMON_WORKERS workers) until the container is
#    stopped, its log on standard output. With arguments: runs them instead, e.g.
#    `docker compose run --rm aiida verdi status`.
#
# Settings come from the environment (docker-compose.yml sets them from .env; the defaults are
# below). The broker variables are AiiDA's own AIIDA_BROKER_* names, which `verdi profile setup` also
# reads. The two passwords have no default: the entrypoint stops (exit 2) when one is empty or is an
# example password (.env.example, or the old defaults aiida/guest), before it contacts any service,
# unless AIIDA_MLIP_ALLOW_EXAMPLE_PASSWORDS=1.
set -euo pipefail

: "${AIIDA_MLIP_PROFILE:=aiida-mlip}"
: "${AIIDA_MLIP_EMAIL:=aiida@localhost}"
: "${AIIDA_MLIP_FIRST_NAME:=AiiDA}"
: "${AIIDA_MLIP_LAST_NAME:=mlip}"
: "${AIIDA_MLIP_INSTITUTION:=docker}"
: "${AIIDA_MLIP_DB_HOST:=postgres}"
: "${AIIDA_MLIP_DB_PORT:=5432}"
: "${AIIDA_MLIP_DB_USER:=aiida}"
: "${AIIDA_MLIP_DB_PASSWORD:=}"
: "${AIIDA_MLIP_DB_NAME:=aiida}"
: "${AIIDA_MLIP_REPOSITORY:=/srv/aiida/repository}"
: "${AIIDA_BROKER_PROTOCOL:=amqp}"
: "${AIIDA_BROKER_HOST:=rabbitmq}"
: "${AIIDA_BROKER_PORT:=5672}"
: "${AIIDA_BROKER_USERNAME:=aiida}"
: "${AIIDA_BROKER_PASSWORD:=}"
: "${AIIDA_BROKER_VIRTUAL_HOST:=}"
: "${AIIDA_MLIP_PSEUDO_FOLDER:=/usr/share/espresso/pseudo}"
: "${AIIDA_MLIP_PSEUDO_ELEMENTS:=Si}"
: "${AIIDA_MLIP_PSEUDO_FUNCTIONAL:=pbe}"
: "${AIIDA_MLIP_PSEUDO_FAMILY:=debian/pbe}"
: "${AIIDA_MLIP_DAEMON_WORKERS:=2}"
: "${AIIDA_MLIP_WAIT_SECONDS:=120}"
: "${AIIDA_MLIP_ALLOW_EXAMPLE_PASSWORDS:=0}"
export AIIDA_BROKER_PROTOCOL AIIDA_BROKER_HOST AIIDA_BROKER_PORT AIIDA_BROKER_USERNAME \
    AIIDA_BROKER_PASSWORD AIIDA_BROKER_VIRTUAL_HOST

log() { echo "[aiida-mlip entrypoint] $*"; }

wait_for() {  # wait_for NAME HOST PORT: until HOST:PORT accepts a TCP connection
    local name=$1 host=$2 port=$3 waited=0
    until (exec 3<>"/dev/tcp/${host}/${port}") 2>/dev/null; do
        if ((waited >= AIIDA_MLIP_WAIT_SECONDS)); then
            log "${name} at ${host}:${port} did not answer within ${AIIDA_MLIP_WAIT_SECONDS} s"
            exit 1
        fi
        sleep 2
        waited=$((waited + 2))
    done
    log "${name} answers at ${host}:${port}"
}

# The passwords of .env.example and the defaults of earlier versions: never in production.
EXAMPLE_PASSWORDS=(change-me-database change-me-broker aiida guest)

refuse_example_password() {  # refuse_example_password VARIABLE: exit 2 for an empty or example value
    local name=$1 value=${!1} example
    if [[ -z "${value}" ]]; then
        log "${name} is not set: put a password in .env (see .env.example)"
        exit 2
    fi
    [[ "${AIIDA_MLIP_ALLOW_EXAMPLE_PASSWORDS}" == 1 ]] && return 0
    for example in "${EXAMPLE_PASSWORDS[@]}"; do
        if [[ "${value}" == "${example}" ]]; then
            log "${name} is the example password '${example}': choose your own in .env (or set" \
                "AIIDA_MLIP_ALLOW_EXAMPLE_PASSWORDS=1 for a throwaway test)"
            exit 2
        fi
    done
}

refuse_example_password AIIDA_MLIP_DB_PASSWORD
refuse_example_password AIIDA_BROKER_PASSWORD

wait_for PostgreSQL "${AIIDA_MLIP_DB_HOST}" "${AIIDA_MLIP_DB_PORT}"
wait_for RabbitMQ "${AIIDA_BROKER_HOST}" "${AIIDA_BROKER_PORT}"

profile="${AIIDA_MLIP_PROFILE}"
config_dir="$(python -c 'from aiida.manage.configuration.settings import AiiDAConfigDir; print(AiiDAConfigDir.get())')"
if (($# == 0)); then
    # This container runs the daemon. The config dir is a volume: a daemon PID file left there by a
    # previous container is stale (its PID may even belong to a live process of this one) and would
    # make AiiDA believe a daemon is running. (`docker compose run aiida CMD` leaves it alone.)
    rm -f "${config_dir}/daemon/circus-${profile}.pid"
fi

if verdi profile show "${profile}" >/dev/null 2>&1; then
    log "profile ${profile} exists: kept"
else
    log "first start: creating profile ${profile} (core.psql_dos on ${AIIDA_MLIP_DB_HOST})"
    mkdir -p "${AIIDA_MLIP_REPOSITORY}"
    verdi profile setup core.psql_dos --non-interactive \
        --profile-name "${profile}" --set-as-default \
        --email "${AIIDA_MLIP_EMAIL}" --first-name "${AIIDA_MLIP_FIRST_NAME}" \
        --last-name "${AIIDA_MLIP_LAST_NAME}" --institution "${AIIDA_MLIP_INSTITUTION}" \
        --database-hostname "${AIIDA_MLIP_DB_HOST}" --database-port "${AIIDA_MLIP_DB_PORT}" \
        --database-username "${AIIDA_MLIP_DB_USER}" --database-password "${AIIDA_MLIP_DB_PASSWORD}" \
        --database-name "${AIIDA_MLIP_DB_NAME}" \
        --repository-uri "file://${AIIDA_MLIP_REPOSITORY}" \
        --broker core.rabbitmq
fi

# `profile setup` only warns when it cannot reach RabbitMQ; this fails instead, and keeps the
# broker settings in step with the environment on every start.
verdi profile configure-broker core.rabbitmq "${profile}" --non-interactive \
    --broker-protocol "${AIIDA_BROKER_PROTOCOL}" \
    --broker-host "${AIIDA_BROKER_HOST}" --broker-port "${AIIDA_BROKER_PORT}" \
    --broker-username "${AIIDA_BROKER_USERNAME}" --broker-password "${AIIDA_BROKER_PASSWORD}" \
    --broker-virtual-host "${AIIDA_BROKER_VIRTUAL_HOST}"

aiida-mlip -p "${profile}" setup localhost
if command -v pw.x >/dev/null; then
    aiida-mlip -p "${profile}" setup pw --computer localhost
    if verdi -p "${profile}" group show "${AIIDA_MLIP_PSEUDO_FAMILY}" >/dev/null 2>&1; then
        log "pseudopotential family ${AIIDA_MLIP_PSEUDO_FAMILY} exists: kept"
    else
        aiida-mlip -p "${profile}" setup pseudos --folder "${AIIDA_MLIP_PSEUDO_FOLDER}" \
            --elements "${AIIDA_MLIP_PSEUDO_ELEMENTS}" --functional "${AIIDA_MLIP_PSEUDO_FUNCTIONAL}" \
            --label "${AIIDA_MLIP_PSEUDO_FAMILY}"
    fi
else
    log "pw.x is not installed: the pw labeller is not set up"
fi

if (($# > 0)); then
    exec "$@"
fi

tail -n 0 -F "${config_dir}/daemon/log/aiida-${profile}.log" 2>/dev/null &
tail_pid=$!
sleep_pid=
stop_daemon() {
    log "stopping the daemon"
    verdi -p "${profile}" daemon stop || true
    kill "${tail_pid}" ${sleep_pid} 2>/dev/null || true
    exit 0
}
trap stop_daemon TERM INT

verdi -p "${profile}" daemon start "${AIIDA_MLIP_DAEMON_WORKERS}"
log "daemon running with ${AIIDA_MLIP_DAEMON_WORKERS} worker(s); its log follows"
while verdi -p "${profile}" daemon status >/dev/null 2>&1; do
    sleep 60 &
    sleep_pid=$!
    wait "${sleep_pid}" || true
done
log "the daemon is no longer running"
kill "${tail_pid}" 2>/dev/null || true
exit 1

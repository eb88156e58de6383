# Image of the `aiida` service of docker-compose.yml: aiida-mlip, Quantum ESPRESSO (pw.x and
# Debian's pseudopotentials) and the CPU build of torch. docker/entrypoint.sh creates the AiiDA
# profile on first start and runs the daemon.
#
# There is no Docker engine on the development machines: this recipe is checked by
# tests/test_docker_compose.py, not built in CI.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=1

# pw.x (+ mpirun for calculations with withmpi=True) and the UPF files in /usr/share/espresso/pseudo
RUN apt-get update \
    && apt-get install -y --no-install-recommends quantum-espresso quantum-espresso-data openmpi-bin \
    && rm -rf /var/lib/apt/lists/*

# torch first, from the CPU index, so that installing aiida-mlip does not pull a CUDA build
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /opt/aiida-mlip
COPY pyproject.toml README.md ./
COPY aiida_mlip ./aiida_mlip
# a quick check that the engine executables and pw.x are where the entrypoint looks for them
RUN pip install . && aiida-mlip-train --help >/dev/null && command -v pw.x

COPY docker/entrypoint.sh /usr/local/bin/aiida-mlip-entrypoint
RUN chmod 755 /usr/local/bin/aiida-mlip-entrypoint

# Everything from here runs as an unprivileged user (mpirun needs no root override). The AiiDA
# config dir and the file repository exist, owned by it, so that the named volumes mounted there
# start with that owner and mode 700.
RUN useradd --create-home --uid 1000 --shell /bin/bash aiida \
    && mkdir -p /home/aiida/.aiida /srv/aiida/repository \
    && chown -R aiida:aiida /home/aiida/.aiida /srv/aiida \
    && chmod 700 /home/aiida/.aiida /srv/aiida/repository
USER aiida
WORKDIR /home/aiida

ENTRYPOINT ["/usr/local/bin/aiida-mlip-entrypoint"]

# syntax=docker/dockerfile:1
# LocalAI image: one image for web, workers, beat and one-off `localai <command>` runs.
#   docker build -t localai .
# Build on the machine that will run it for the fastest llama.cpp:
#   docker build --build-arg CMAKE_ARGS="-DGGML_NATIVE=ON" -t localai .
# For NVIDIA GPUs (llama.cpp built with CUDA; x86-64 only; run with LLAMA_GPU_LAYERS=-1):
#   docker build --build-arg ACCELERATOR=cuda -t localai:cuda .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# cpu or cuda: picks the compilers-* and system-* stages below.
ARG ACCELERATOR=cpu
# CUDA from NVIDIA's Debian 12 repository, on the same Python image as the CPU build (the
# nvidia/cuda images are Ubuntu, whose Python is not the 3.11 this project is tested on).
# Host drivers must support this CUDA version (nvidia-smi shows the highest they do).
ARG CUDA_VERSION=12.6
ARG CUDA_KEYRING=https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb

# --- compilers: live in the builder only ----------------------------------------------
FROM ${PYTHON_IMAGE} AS compilers-cpu
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
ENV ACCELERATOR_CMAKE_ARGS=""

FROM compilers-cpu AS compilers-cuda
ARG CUDA_VERSION
ARG CUDA_KEYRING
ADD ${CUDA_KEYRING} /tmp/cuda-keyring.deb
# nvcc with the headers and libraries llama.cpp's CUDA backend compiles and links against
# (libcuda itself comes from the host driver at run time; the link uses the driver stub).
RUN dpkg -i /tmp/cuda-keyring.deb && rm /tmp/cuda-keyring.deb \
    && cuda="$(echo "$CUDA_VERSION" | tr . -)" \
    && apt-get update \
    && apt-get install -y --no-install-recommends "cuda-nvcc-$cuda" "cuda-cccl-$cuda" \
        "cuda-cudart-dev-$cuda" "cuda-driver-dev-$cuda" "libcublas-dev-$cuda" \
    && rm -rf /var/lib/apt/lists/*
# Without CMAKE_CUDA_ARCHITECTURES, llama.cpp compiles for its usual list of GPU generations.
ENV PATH=/usr/local/cuda-${CUDA_VERSION}/bin:$PATH \
    ACCELERATOR_CMAKE_ARGS="-DGGML_CUDA=ON"

# --- builder ----------------------------------------------------------------------------
FROM compilers-${ACCELERATOR} AS builder

# llama.cpp compiles for the build machine's CPU by default (-march=native), which can
# crash with "Illegal instruction" on another host. This baseline (AVX2/FMA, any x86-64
# CPU from about 2013 on) runs anywhere the image is likely to go.
# The build reads CMAKE_ARGS from the environment, where RUN finds every ARG.
ARG CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /src
# Dependencies first, from pyproject.toml alone: editing the code then does not redo the
# several-minute llama-cpp-python compile.
# The versions are the ones CI tested (constraints.txt).
COPY pyproject.toml constraints.txt ./
# Built natively on a CPU with AMX, llama.cpp needs GCC 12's AMX intrinsics corrected (the header
# says why; without AMX it changes nothing).
COPY scripts/gcc_amx_tile_fix.h /tmp/gcc_amx_tile_fix.h
ENV CXXFLAGS="-include /tmp/gcc_amx_tile_fix.h"
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && CMAKE_ARGS="$CMAKE_ARGS $ACCELERATOR_CMAKE_ARGS" pip install -c constraints.txt -r /tmp/requirements.txt

COPY . .
# templates/ and static/ sit outside every package, so the wheel leaves them out, yet
# settings.py looks for them beside the packages (BASE_DIR): put them there.
RUN pip install --no-deps . \
    && site_packages="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && cp -r templates static "$site_packages"/ \
    && pip check

# --- runtime --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS system-cpu
# llama.cpp is built with OpenMP: libgomp is its one runtime library slim lacks. Tesseract
# reads scanned PDF pages (OCR; English). `localai backup` runs pg_dump, which must be of the
# server's major version (compose's postgres:16): from PostgreSQL's own repository, which
# Debian's postgresql-common adds with its keyring.
ARG POSTGRES_CLIENT_MAJOR=16
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 tesseract-ocr postgresql-common \
    && /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y \
    && apt-get install -y --no-install-recommends "postgresql-client-$POSTGRES_CLIENT_MAJOR" \
    && rm -rf /var/lib/apt/lists/*

FROM system-cpu AS system-cuda
ARG CUDA_VERSION
ARG CUDA_KEYRING
ADD ${CUDA_KEYRING} /tmp/cuda-keyring.deb
# The CUDA runtime and cuBLAS only, not the toolkit.
RUN dpkg -i /tmp/cuda-keyring.deb && rm /tmp/cuda-keyring.deb \
    && cuda="$(echo "$CUDA_VERSION" | tr . -)" \
    && apt-get update \
    && apt-get install -y --no-install-recommends "cuda-cudart-$cuda" "libcublas-$cuda" \
    && rm -rf /var/lib/apt/lists/* \
    && echo "/usr/local/cuda-$CUDA_VERSION/targets/x86_64-linux/lib" > /etc/ld.so.conf.d/localai-cuda.conf \
    && ldconfig
# The NVIDIA container runtime mounts the driver's libcuda only for the "compute"
# capability, which an image not based on nvidia/cuda has to ask for. Which GPUs the
# container sees is left to `--gpus` or compose's device reservation.
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility

FROM system-${ACCELERATOR}

RUN groupadd --system --gid 1000 localai \
    && useradd --system --uid 1000 --gid localai --create-home --home-dir /home/localai \
        --shell /usr/sbin/nologin localai \
    && mkdir /data && chown localai:localai /data

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=localai_site.settings \
    LOCALAI_DATA_DIR=/data

# SQLite (embedded mode), uploads, downloaded models and the generated secret key.
VOLUME /data
# Empty and read-only on purpose: Celery puts the working folder on sys.path.
WORKDIR /app
USER localai
EXPOSE 8000

# Alone, the image migrates at start (embedded mode). docker-compose migrates in a
# one-shot service instead and starts web with --no-migrate, so replicas never race.
CMD ["localai", "serve", "--host", "0.0.0.0", "--port", "8000"]

# syntax=docker/dockerfile:1
# LocalAI image: one image for web, workers, beat and one-off `localai <command>` runs.
#   docker build -t localai .
# Build on the machine that will run it for the fastest llama.cpp:
#   docker build --build-arg CMAKE_ARGS="-DGGML_NATIVE=ON" -t localai .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: compilers live here only ------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*

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
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt

COPY . .
# templates/ and static/ sit outside every package, so the wheel leaves them out, yet
# settings.py looks for them beside the packages (BASE_DIR): put them there.
RUN pip install --no-deps . \
    && site_packages="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && cp -r templates static "$site_packages"/ \
    && pip check

# --- runtime --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

# llama.cpp is built with OpenMP: libgomp is its one runtime library slim lacks. Tesseract
# reads scanned PDF pages (OCR; English).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 tesseract-ocr \
    && rm -rf /var/lib/apt/lists/*

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

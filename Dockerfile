# One image for every process of the platform (workers, API, sandboxes); compose.yaml picks the command.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.lock .
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY . .
# Bytecode for the read-only image: the workflow sandbox imports workflow modules once per workflow run.
RUN python -m compileall -q workflows
USER nobody

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    WEB_BIND_HOST=0.0.0.0 \
    FLOWER_ADDRESS=0.0.0.0

WORKDIR /app
COPY . .
# Editable install: migrations and alembic.ini are read from /app, as in a checkout.
RUN pip install -e . && mkdir -p var

EXPOSE 8000 5555
CMD ["python", "-m", "web.serve"]

"""Production settings plus the benchmark's baseline view (never mounted by the product)."""

from backend.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"

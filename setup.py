"""Package definition; versions pinned to a set measured to work together (see DESIGN.md)."""

from setuptools import Extension, find_packages, setup

# The compiled envelope scanner (ADR 0008). Optional: without a C compiler the install goes on
# and msgspec reads the envelopes instead, a little more slowly.
ENVELOPE_SCAN = Extension(
    "chargeback_pipeline.lib._envelope_scan",
    ["chargeback_pipeline/lib/_envelope_scan.c", "chargeback_pipeline/lib/_body_usage.c"],
    depends=["chargeback_pipeline/lib/_envelope_scan.h"],
    extra_compile_args=["-O3"],
    optional=True,
)

setup(
    name="chargeback_pipeline",
    version="0.1.0",
    description="Exact, auditable chargeback for Azure OpenAI traffic behind Azure API Management.",
    python_requires=">=3.11,<3.14",
    packages=find_packages(exclude=["chargeback_pipeline_tests*"]),
    include_package_data=True,
    package_data={"chargeback_pipeline.gateway": ["*.csv"], "chargeback_pipeline.lib": ["*.pyi"]},
    ext_modules=[ENVELOPE_SCAN],
    install_requires=[
        "dagster==1.13.27",
        "dagster-webserver==1.13.27",
        "dagster-azure==0.29.27",
        "azure-storage-blob==12.31.1",
        "azure-monitor-query==2.0.0",
        "azure-identity==1.27.0",
        "azure-functions==1.26.0",
        "polars==2.1.0",
        "pyarrow==26.0.1",
        "deltalake==1.6.6",
        "duckdb==1.5.5",
        "duckdb-extensions==1.5.5",
        "duckdb-extension-delta==1.5.5",
        "duckdb-extension-azure==1.5.5",
        "pandera[polars]==0.35.0",
        "orjson==3.13.0",
        "msgspec==0.22.0",
        "matplotlib==3.11.2",
        "prometheus-client==0.26.0",
        "starlette==1.10.0",
        "uvicorn==0.54.0",
    ],
    extras_require={
        "dev": [
            "pytest==9.2.0",
            "ruff==0.17.6",
            "mypy==2.4.1",
            "jsonschema==4.26.0",
            "openai==3.51.0",
            "pycep-parser==0.7.1",
            "hypothesis==6.170.15",
            "pandas==3.1.1",
            "python-hcl2==8.1.4",
            "schemathesis==4.32.5",
            "dagster-graphql==1.13.27",
        ],
        # The Dagster image (Dockerfile): run storage in PostgreSQL.
        "deploy": [
            "dagster-postgres==0.29.27",
        ],
    },
    entry_points={"console_scripts": ["chargeback=chargeback_pipeline.cli:main"]},
)

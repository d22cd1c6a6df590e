"""Static files storage: WhiteNoise's compressed, hashed files."""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    """Hashed names in ES module imports too, so a page never mixes files of two deploys."""

    support_js_module_import_aggregation = True

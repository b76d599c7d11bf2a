"""Analysis helpers behind the tools in ``tools/analysis``."""

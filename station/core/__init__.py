"""The station's Qt-free core: sources, registration, engines, verdicts, recipes, datasets."""

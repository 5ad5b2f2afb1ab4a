"""The station's Qt user interface (the only package that imports Qt); one widget per module."""

"""Built-in presets (YAML), shipped inside the wheel as the package `vidqa._presets`."""

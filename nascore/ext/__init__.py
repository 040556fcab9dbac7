"""Extension points: the hook specifications, the plugin manager, and the name registries hooks fill."""

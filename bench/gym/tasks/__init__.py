"""Built-in tasks, each a loader that turns a declared source into a long table and a `TaskSpec`."""

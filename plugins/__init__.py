"""First-party feature plugins, each on the same hooks as any third-party plugin."""

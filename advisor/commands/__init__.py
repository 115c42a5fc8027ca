"""One module per command (the fastapi-cli layout); cli.py registers them."""

"""What the tests drive the node with (a client, a node process, generated scenes, docs rendering); not installed."""

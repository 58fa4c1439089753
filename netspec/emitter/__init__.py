"""Existing ``nn.Module`` -> spec: containers, layer arguments, traced Graphs, blocks, the
training sections, and the registration lint. ``emit`` is the entry point."""

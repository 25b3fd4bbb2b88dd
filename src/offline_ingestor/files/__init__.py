"""Reading the data file: NeXus metadata, the file's identity, its checksums and file list,
and the file writer's "done writing" message."""

"""ZTF survey knowledge with no I/O: the Avro layout (field names, units, types) and the alert decoding."""

"""protoc plugins that protoship provides where the toolchain has no executable of its own."""

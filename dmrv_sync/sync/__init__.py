"""The registry-agnostic sync core: adapters describe a registry, the engine runs their steps."""

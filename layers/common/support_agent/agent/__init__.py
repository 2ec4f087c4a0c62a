"""The agent: tools, model providers, prompts and the tool-use loop."""

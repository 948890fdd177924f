"""Self-Instruct data generation: prompts, parsing, filters, the teacher client, the loop."""

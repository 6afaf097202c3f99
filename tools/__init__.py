"""Perception tools: plain functions from decoded media to pydantic evidence. No LLM inside."""

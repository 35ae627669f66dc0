"""Adapters: the only code that speaks kafka-python and google-genai; library types stay inside."""

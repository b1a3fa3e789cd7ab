"""Test doubles for paid external APIs: real servers speaking their wire formats."""

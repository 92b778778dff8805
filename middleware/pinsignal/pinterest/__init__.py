"""The Pinterest v5 events contract, HTTP client and response parsing."""

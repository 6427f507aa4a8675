"""Talking to a registry: transport, the Docker token/basic auth flow, typed API calls, credentials.

Below puller/ and registry/ (both import it); imports only ocispec/ and third-party libraries.
"""

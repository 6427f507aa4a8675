"""HTTP handlers: parse the request, authorize, make one store call, render."""

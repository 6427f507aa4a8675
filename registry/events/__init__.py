"""Webhook notifications in distribution's event format, durable and delivered at least once.

- `config`: the `notifications` section (endpoints and their retry and filter settings)
- `envelope`: the event JSON, the envelope, the HMAC signature header
- `emit`: what handlers call after a change or a pull
- `recorder`: writes events to the queue (pushes and deletes at once, pulls batched)
- `queue`: the queue in storage and the delivery lease
- `worker`: the deliverer (retries, back-off, dead letter)
- `stats`: counters for metrics
- `service`: starts and stops it all with the app
"""

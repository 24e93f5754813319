"""notifier: fans job events and alerts out to WebSocket (`/ws`) and Server-Sent Events (`/sse`) clients."""

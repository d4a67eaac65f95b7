"""HTTP layer: aiohttp routes only. Handlers parse, call one service method, render."""

"""The media repository: uploads, downloads, thumbnails, URL previews and the remote media cache."""

"""One adapter per provider behind channels.base.ChannelAdapter; channels.registry picks one per store and channel."""

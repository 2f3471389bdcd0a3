// Package handlers holds cowbird's typed events, the handler capability
// interfaces, the registry of configured handlers and the dispatcher.
package handlers

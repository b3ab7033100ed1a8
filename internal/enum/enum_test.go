package enum

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

type color int

var colors = Names[color]{"red", "green", "blue"}

func TestNames(t *testing.T) {
	assert.Equal(t, "green", colors.String(1, "color"))
	assert.Equal(t, "color(3)", colors.String(3, "color"))
	assert.Equal(t, "color(-1)", colors.String(-1, "color"))
	v, ok := colors.Parse("blue")
	assert.True(t, ok)
	assert.Equal(t, color(2), v)
	_, ok = colors.Parse("Blue")
	assert.False(t, ok)
	assert.Equal(t, "red, green or blue", colors.List())
	assert.Equal(t, "red or green", colors[:2].List())
	assert.Equal(t, "red", colors[:1].List())
}

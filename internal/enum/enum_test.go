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
	v, err := colors.Parse("blue", 0, "unknown color")
	assert.NoError(t, err)
	assert.Equal(t, color(2), v)
	v, err = colors.Parse("", 1, "unknown color")
	assert.NoError(t, err)
	assert.Equal(t, color(1), v)
	_, err = colors.Parse("Blue", 0, "unknown color")
	assert.EqualError(t, err, `unknown color "Blue" (want red, green or blue)`)
	assert.Equal(t, "red, green or blue", colors.List())
	assert.Equal(t, "red or green", colors[:2].List())
	assert.Equal(t, "red", colors[:1].List())
}

package projgen

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
)

// Default sizes, chosen from the model count when an option is zero.
const (
	defaultName     = "gen"
	defaultDBTVer   = "1.11.16"
	defaultMacros   = 300
	ephemeralShare  = 0.10 // of all models, taken from the intermediate layers
	stagingShare    = 0.20 // of all models
	unitTestShare   = 0.02 // of eligible models
	relationShare   = 0.25 // of non-ephemeral models past staging
	macroUseShare   = 0.30 // of models past staging
	sourceEvery     = 3    // every third staging model reads a source
	maxRefs         = 3
	rowsPerSeed     = 5
	seedsPerModel   = 25 // one seed per this many models, within [minSeeds, maxSeeds]
	minSeeds        = 2
	maxSeeds        = 50
	minLayers       = 3
	maxLayers       = 16
	layerScaleModel = 25.0
)

// domains are the business tags models are spread over.
var domains = [...]string{"finance", "marketing", "product", "operations"}

// plan is the abstract project both writers render: seeds, then models layer
// by layer. Every ref points to an earlier node, so the order is topological.
type plan struct {
	legacy bool // Options.Legacy
	name   string
	rnd    int64
	layers int     // model layers, staging is 1, marts is layers
	seeds  []*node // layer 0
	models []*node // layer 1..layers
	byName map[string]*node
	width  int // digits in generated names
}

// node is one seed or model of a plan.
type node struct {
	name         string
	layer        int    // 0 for seeds
	materialized string // seed, view, table or ephemeral
	refs         []*node
	viaSource    bool     // a staging model reading its seed through source raw.<seed>
	tags         []string // tags set on the node itself (the folder adds the layer tag)
	relationTo   *node    // target of a relationships test on id, or nil
	usesMacro    bool     // calls the project macro gen_amount
	unitTest     bool     // has a unit test
	owner        string   // meta.owner
	amounts      []int    // seed rows' amounts (seeds only)
}

// ephemeral reports whether dbt inlines n instead of building it.
func (n *node) ephemeral() bool { return n.materialized == "ephemeral" }

// layerKind names a model layer: staging, intermediate or marts.
func layerKind(layer, layers int) string {
	switch {
	case layer == 0:
		return "seeds"
	case layer == 1:
		return "staging"
	case layer == layers:
		return "marts"
	default:
		return "intermediate"
	}
}

// folder is the directory under models/ of a layer, e.g. l02_intermediate.
func (p *plan) folder(layer int) string {
	return fmt.Sprintf("l%02d_%s", layer, layerKind(layer, p.layers))
}

// shape holds what both option types share.
type shape struct {
	models, layers, seeds int
	seed                  int64
	name                  string
	legacy                bool // Options.Legacy
}

// newPlan lays out a project deterministically from s.
func newPlan(s shape) (*plan, error) {
	if s.models < 1 {
		return nil, errors.New("projgen: Models must be at least 1")
	}
	if s.layers < 0 || s.seeds < 0 {
		return nil, errors.New("projgen: Layers and Seeds must not be negative")
	}
	if s.name == "" {
		s.name = defaultName
	}
	if !validName(s.name) {
		return nil, fmt.Errorf("projgen: project name %q is not a lowercase identifier", s.name)
	}
	n := s.models
	layers := s.layers
	if layers == 0 {
		layers = minLayers
		if n > layerScaleModel {
			layers += 2 * int(math.Log2(float64(n)/layerScaleModel))
		}
		layers = min(layers, maxLayers)
	}
	layers = min(layers, n)
	seeds := s.seeds
	if seeds == 0 {
		seeds = min(max(n/seedsPerModel, minSeeds), maxSeeds)
	}

	p := &plan{
		legacy: s.legacy,
		name:   s.name,
		rnd:    s.seed,
		layers: layers,
		byName: map[string]*node{},
		width:  max(4, len(strconv.Itoa(n))),
	}
	rng := rand.New(rand.NewPCG(uint64(s.seed), 0x9e3779b97f4a7c15))

	for i := range seeds {
		sd := &node{name: fmt.Sprintf("seed_%03d", i+1), materialized: "seed", owner: "loader"}
		for range rowsPerSeed {
			sd.amounts = append(sd.amounts, 1+rng.IntN(999))
		}
		p.add(sd)
	}

	// Layer sizes: staging gets stagingShare, the rest is spread evenly,
	// earlier layers taking the remainder; every layer gets at least one.
	sizes := make([]int, layers+1)
	sizes[1] = n
	if layers > 1 {
		sizes[1] = min(max(1, int(math.Round(float64(n)*stagingShare))), n-(layers-1))
		rest := n - sizes[1]
		for l := 2; l <= layers; l++ {
			sizes[l] = rest / (layers - 1)
			if l-2 < rest%(layers-1) {
				sizes[l]++
			}
		}
	}

	byLayer := make([][]*node, layers+1)
	for l := 1; l <= layers; l++ {
		for range sizes[l] {
			m := &node{layer: l}
			m.name = fmt.Sprintf("%s_%0*d", prefix(layerKind(l, layers)), p.width, len(p.models)+1)
			m.tags = []string{domains[rng.IntN(len(domains))]}
			if rng.IntN(100) < 15 {
				m.tags = append(m.tags, "nightly")
			}
			m.owner = "team-" + domains[rng.IntN(len(domains))]
			switch kind := layerKind(l, layers); {
			case l == 1:
				m.materialized = "view"
				sd := p.seeds[(len(p.models))%len(p.seeds)]
				m.refs = []*node{sd}
				m.viaSource = len(p.models)%sourceEvery == 0
			case kind == "marts":
				m.materialized = "table"
			default:
				m.materialized = "view"
				if rng.IntN(100) < 60 {
					m.materialized = "table"
				}
			}
			if l > 1 {
				// Models are added layer by layer: the earlier layers are a prefix.
				m.refs = pickRefs(rng, byLayer[l-1], p.models[:len(p.models)-len(byLayer[l])])
				m.usesMacro = rng.Float64() < macroUseShare
			}
			byLayer[l] = append(byLayer[l], m)
			p.add(m)
		}
	}

	// About ephemeralShare of all models become ephemeral, drawn from the
	// intermediate layers.
	var intermediate []*node
	for l := 2; l < layers; l++ {
		intermediate = append(intermediate, byLayer[l]...)
	}
	want := min(int(math.Round(float64(n)*ephemeralShare)), len(intermediate))
	for _, i := range rng.Perm(len(intermediate))[:want] {
		intermediate[i].materialized = "ephemeral"
	}

	// Tests: relationships to a built parent, unit tests where every input
	// is a built model.
	for _, m := range p.models {
		if m.layer < 2 || m.ephemeral() {
			continue
		}
		var built []*node
		for _, r := range m.refs {
			if !r.ephemeral() {
				built = append(built, r)
			}
		}
		if len(built) > 0 && rng.Float64() < relationShare {
			m.relationTo = built[rng.IntN(len(built))]
		}
		if len(built) == len(m.refs) && rng.Float64() < unitTestShare {
			m.unitTest = true
		}
	}
	return p, nil
}

// pickRefs returns 1..maxRefs distinct models from earlier, the models of
// the earlier layers, the first from last, the layer just before (so a
// model's depth is its layer).
func pickRefs(rng *rand.Rand, last, pool []*node) []*node {
	refs := []*node{last[rng.IntN(len(last))]}
	want := 1 + rng.IntN(maxRefs)
	for tries := 0; len(refs) < want && tries < 4*maxRefs; tries++ {
		c := pool[rng.IntN(len(pool))]
		dup := false
		for _, r := range refs {
			dup = dup || r == c
		}
		if !dup {
			refs = append(refs, c)
		}
	}
	return refs
}

// add registers n as a seed or model.
func (p *plan) add(n *node) {
	if n.materialized == "seed" {
		p.seeds = append(p.seeds, n)
	} else {
		p.models = append(p.models, n)
	}
	p.byName[n.name] = n
}

// prefix is the model-name prefix of a layer kind.
func prefix(kind string) string {
	switch kind {
	case "staging":
		return "stg"
	case "marts":
		return "mart"
	default:
		return "int"
	}
}

// validName reports whether s can be a dbt project name: lowercase letters,
// digits and underscores, not starting with a digit.
func validName(s string) bool {
	for i, r := range s {
		ok := r == '_' || (r >= 'a' && r <= 'z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return false
		}
	}
	return s != ""
}

// seed returns the seed a staging model reads (through ref or source).
func (n *node) seed() *node { return n.refs[0] }

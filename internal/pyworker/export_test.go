package pyworker

// Remembered returns how many ends of forked workers z keeps that no
// Fork will take: those reported before their Fork took them, and the
// forks a cancelled Fork left. Both go once their Fork or their end
// comes.
func (z *Zygote) Remembered() int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return len(z.early) + len(z.dropped)
}

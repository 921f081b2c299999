package cycle

const one = 1

func two() int { return three - one }

package cycle

func top() int { return useT(T{}) + V + two() }

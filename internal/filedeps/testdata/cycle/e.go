package cycle

const three = one + 2

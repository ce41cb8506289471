; Softmax over the rows of a [64, 1024] bf16 matrix, 16 rows at a time.
.equ ROWS, 64
.equ COLS, 1024
.equ R, 16                      ; rows per tile
.equ X, 0x0                     ; input in HBM
.equ Y, X + ROWS * COLS * 2     ; output in HBM
.equ TILE, R * COLS * 2

    loop ROWS / R, rows_done, a0, TILE
    dma.load sram[0], hbm[X + a0], bf16, R, COLS
    sem.signal dma, 0
    sem.wait vec, 0
    v.softmax sram[TILE], sram[0], R, COLS, bf16, bf16
    sem.signal vec, 1
    sem.wait dma, 1
    dma.store hbm[Y + a0], sram[TILE], bf16, R, COLS
rows_done:
    halt

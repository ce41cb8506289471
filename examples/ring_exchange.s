; Ring exchange: every chip sends a tile to its right neighbour and receives one from its
; left, then all chips meet. Assemble one copy per chip with its own CHIP (e.g. through
; an include of a per-chip constants file); here chip 1 of a ring of 4.
.equ CHIPS, 4
.equ CHIP, 1
.equ RIGHT, (CHIP + 1) - ((CHIP + 1) / CHIPS) * CHIPS
.equ LEFT, (CHIP + CHIPS - 1) - ((CHIP + CHIPS - 1) / CHIPS) * CHIPS
.equ BYTES, 64KiB

    dma.load sram[0], hbm[0x10_0000], bf16, 128, 256      ; the tile to pass on
    sem.signal dma, 0
    sem.wait net, 0
    net.send RIGHT, sram[0], BYTES, 7
    net.recv LEFT, sram[BYTES], BYTES, 7
    sem.signal net, 1
    sem.wait dma, 1
    dma.store hbm[0x20_0000], sram[BYTES], bf16, 128, 256
    net.barrier 0
    halt

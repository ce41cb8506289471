; Tiled bf16 GEMM, C[M,N] = A[M,K] @ B[K,N], on one core, with double-buffered DMA.
;
; The DMA engine loads K-tiles of A and B into two SRAM buffers in turn while the matrix
; engine multiplies the other buffer; semaphores hand each buffer back and forth:
;   0/1  buffer 0/1 full  (dma -> mx)      2/3  buffer 0/1 free  (mx -> dma)
;   4    accumulator ready (mx -> vec)    5    accumulator free (vec -> mx)
;   6    C tile in SRAM    (vec -> dma)   7    C buffer free    (dma -> vec)
; Loops keep the program short: a0 walks A, a1 walks B, a2 walks C. A loop restores its
; registers when it ends, so the nested loops add their offsets into one register.

.equ M, 256
.equ K, 512
.equ N, 256
.equ T, 64                      ; tile edge
.equ TB, T * T * 2              ; bytes of one bf16 tile
.equ A, 0x0000_0000             ; HBM addresses
.equ B, A + M * K * 2
.equ C, B + K * N * 2
.equ SA0, 0x0000                ; SRAM: two A buffers, two B buffers, one C buffer
.equ SA1, SA0 + TB
.equ SB0, SA1 + TB
.equ SB1, SB0 + TB
.equ SC, SB1 + TB

    sem.signal mx, 2            ; both buffers start free
    sem.signal mx, 3
    sem.signal vec, 5           ; the accumulator starts free
    sem.signal dma, 7           ; the C buffer starts free

; ---- DMA engine: stream K-tile pairs for every output tile, store each C tile ----------
    loop M / T, dma_rows, a0, T * K * 2, a2, T * N * 4
    loop N / T, dma_cols, a1, T * 2, a2, T * 4
    loop K / T / 2, dma_k, a0, 2 * T * 2, a1, 2 * T * N * 2
    sem.wait dma, 2
    dma.load sram[SA0], hbm[A + a0], bf16, T, T, stride=K
    dma.load sram[SB0], hbm[B + a1], bf16, T, T, stride=N
    sem.signal dma, 0
    sem.wait dma, 3
    dma.load sram[SA1], hbm[A + T * 2 + a0], bf16, T, T, stride=K
    dma.load sram[SB1], hbm[B + T * N * 2 + a1], bf16, T, T, stride=N
    sem.signal dma, 1
dma_k:
    sem.wait dma, 6
    dma.store hbm[C + a2], sram[SC], fp32, T, T, stride=N
    sem.signal dma, 7
dma_cols:
dma_rows:

; ---- matrix engine: accumulate K / T products per output tile ---------------------------
    loop M / T * N / T, mx_tiles
    sem.wait mx, 5
    sem.wait mx, 0              ; the first pair overwrites the accumulator...
    mm acc[0], sram[SA0], sram[SB0], T, T, T, bf16, bf16
    sem.signal mx, 2
    sem.wait mx, 1
    mm acc[0], sram[SA1], sram[SB1], T, T, T, bf16, bf16, accum
    sem.signal mx, 3
    loop K / T / 2 - 1, mx_k    ; ...the rest accumulate
    sem.wait mx, 0
    mm acc[0], sram[SA0], sram[SB0], T, T, T, bf16, bf16, accum
    sem.signal mx, 2
    sem.wait mx, 1
    mm acc[0], sram[SA1], sram[SB1], T, T, T, bf16, bf16, accum
    sem.signal mx, 3
mx_k:
    sem.signal mx, 4
mx_tiles:

; ---- vector engine: copy each finished accumulator tile out as fp32 --------------------
    loop M / T * N / T, vec_tiles
    sem.wait vec, 4
    sem.wait vec, 7
    v.cast sram[SC], acc[0], T, T, fp32, fp32
    sem.signal vec, 5
    sem.signal vec, 6
vec_tiles:
    sem.wait dma, 2             ; drain the tokens left at the end
    sem.wait dma, 3
    sem.wait mx, 5
    sem.wait vec, 7
    halt
